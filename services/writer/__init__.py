"""The writer: applies the replicated log to LMDB; its elected leader sequences commands."""
