"""The esdb services: gateway, writer, reader, and the supervisor that runs them."""
