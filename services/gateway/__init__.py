"""The gateway: the public NATS API. Decodes, validates, routes, coalesces appends."""
