"""`EsdbSnapshotRecorder`: the library's snapshots in esdb's snapshot service.

A snapshot of originator `X` at `originator_version` `v` is the snapshot record
(`source_uuid` = the recorder's purpose, `"snapshots"`; `stream_uuid` = `str(X)`; `version` =
`v`), its data the snapshot's state and its metadata the topic. Loading an aggregate reads the
latest record at or below a version: one request for the latest, a list then a read for an
older one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import AggregateRecorder, IntegrityError, StoredEvent

from esdb.client import EsdbError, NotFoundError
from esdb.contracts.snapshots import SnapshotKey
from esdb.eventsourcing.datastore import EsdbDatastore
from esdb.eventsourcing.errors import persistence_error, translated
from esdb.eventsourcing.mapping import content_type_of, snapshot_metadata, stored_snapshot

_LIST_PAGE = 1000


class EsdbSnapshotRecorder(AggregateRecorder):
    """Snapshots (or any other records the library keeps by originator and version) in the
    snapshot service, under `source_uuid` = `source`.

    Inserting a version that is already recorded raises `IntegrityError`, as the library's
    other recorders do: every version is checked before any is recorded. Several snapshots
    of one insert are recorded one request each (the library records one at a time), so
    unlike events they are not written atomically."""

    def __init__(
        self, datastore: EsdbDatastore, *, source: str, keep_last: int | None = None
    ) -> None:
        self.datastore = datastore
        self.client = datastore.client
        self.source = source
        self.keep_last = keep_last

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        keys = [(str(s.originator_id), s.originator_version) for s in stored_events]
        if len(set(keys)) < len(keys):
            msg = f"Stored events are not unique: {stored_events}"
            raise IntegrityError(msg)
        with translated():
            for stream, version in keys:
                if self._exists(stream, version):
                    msg = f"Snapshot of {stream!r} at version {version} already recorded"
                    raise IntegrityError(msg)
            for stored in stored_events:
                self.client.record_snapshot(
                    self.source,
                    str(stored.originator_id),
                    stored.originator_version,
                    stored.state,
                    metadata=snapshot_metadata(stored),
                    content_type=content_type_of(stored.state),
                    keep_last=self.keep_last,
                )
        return None

    def _exists(self, stream: str, version: int) -> bool:
        after = (
            None
            if version == 0
            else SnapshotKey(source_uuid=self.source, stream_uuid=stream, version=version - 1)
        )
        page = self.client.list_snapshots(
            source_uuid=self.source, stream_uuid=stream, after=after, limit=1
        )
        return bool(page.snapshots) and page.snapshots[0].version == version

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        stream = str(originator_id)
        try:
            if desc and limit == 1 and lte is None:
                latest = self.client.read_snapshot(self.source, stream)
                if gt is not None and latest.version <= gt:
                    return []
                return [stored_snapshot(latest, originator_id)]
            versions = self._versions(stream, gt=gt, lte=lte)
            if desc:
                versions.reverse()
            if limit is not None:
                versions = versions[:limit]
            return [
                stored_snapshot(self.client.read_snapshot(self.source, stream, v), originator_id)
                for v in versions
            ]
        except NotFoundError:
            return []  # none at all, or deleted meanwhile
        except EsdbError as e:
            raise persistence_error(e) from e

    def _versions(self, stream: str, *, gt: int | None, lte: int | None) -> list[int]:
        """The recorded versions of `stream` above `gt` and at most `lte`, ascending."""
        after = None
        if gt is not None and gt >= 0:
            after = SnapshotKey(source_uuid=self.source, stream_uuid=stream, version=gt)
        versions: list[int] = []
        while True:
            page = self.client.list_snapshots(
                source_uuid=self.source, stream_uuid=stream, after=after, limit=_LIST_PAGE
            )
            for info in page.snapshots:
                if lte is not None and info.version > lte:
                    return versions
                versions.append(info.version)
            if page.next is None:
                return versions
            after = page.next
