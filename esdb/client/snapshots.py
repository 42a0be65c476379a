"""Snapshot operations of `Client` (`snapshot_record`, `_read`, `_delete`, `_list`)."""

from __future__ import annotations

from esdb.client.connection import Connection


class SnapshotOperations:
    """Mixed into `Client`: snapshots of the client's store."""

    _connection: Connection
    store: str
