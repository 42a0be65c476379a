"""The projection service: users' JavaScript projections, run beside the writer leader."""
