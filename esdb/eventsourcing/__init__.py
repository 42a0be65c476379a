"""esdb as a persistence module of the `eventsourcing` library: set
`PERSISTENCE_MODULE=esdb.eventsourcing`, `ESDB_URL` (a NATS URL or `esdb://` connection
string) and `ESDB_STORE` (created when missing) in the application's environment.

Aggregate events go to one stream per aggregate, notifications are the store's global
positions, tracking records are written in the same multi-stream append as the events they
come with, and snapshots go to the snapshot service (see docs/eventsourcing.md)."""

from __future__ import annotations

from esdb.eventsourcing.factory import EsdbFactory

Factory = EsdbFactory

__all__ = ["EsdbFactory", "Factory"]
