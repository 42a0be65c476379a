"""Infrastructure shared by the services: storage, codecs, settings, NATS plumbing."""
