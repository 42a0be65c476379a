"""esdb: a Raft-replicated event store for event-sourced systems, used over NATS."""

__version__ = "0.1.0"
