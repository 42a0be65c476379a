"""Snapshot operations of `Client` (`snapshot_record`, `_read`, `_delete`, `_list`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal, TypeVar

import msgspec

from esdb.client.connection import Requests
from esdb.client.events import JsonPayload, _payload
from esdb.contracts.api import JSON_CONTENT_TYPE
from esdb.contracts.snapshots import (
    DEFAULT_LIST_LIMIT,
    LATEST,
    SnapshotDeleted,
    SnapshotDeleteRequest,
    SnapshotInfo,
    SnapshotKey,
    SnapshotList,
    SnapshotListRequest,
    SnapshotReadRequest,
)
from esdb.contracts.subjects import Op, api_subject

T = TypeVar("T")


class RecordedSnapshot(msgspec.Struct, JsonPayload, frozen=True, kw_only=True):
    """A snapshot as read back; `data` and `metadata` are the stored bytes."""

    source_uuid: str
    stream_uuid: str
    version: int
    data: bytes
    metadata: bytes
    content_type: str
    created: datetime


class _RecordBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`contracts.snapshots.SnapshotRecordRequest` with byte payloads."""

    source_uuid: str
    stream_uuid: str
    version: int
    data: bytes
    metadata: bytes = b""
    content_type: str = JSON_CONTENT_TYPE
    keep_last: int | None = None
    timeout_ms: int | None = None


_info = msgspec.msgpack.Decoder(SnapshotInfo)
_snapshot = msgspec.msgpack.Decoder(RecordedSnapshot)
_deleted = msgspec.msgpack.Decoder(SnapshotDeleted)
_list = msgspec.msgpack.Decoder(SnapshotList)


class SnapshotOperations:
    """Mixed into `Client`: snapshots of the client's store, keyed by (source, stream,
    version). Reads see every write acknowledged before them, on any node."""

    _connection: Requests
    store: str

    async def record_snapshot(
        self,
        source_uuid: str,
        stream_uuid: str,
        version: int,
        data: object,
        *,
        metadata: object = None,
        content_type: str = JSON_CONTENT_TYPE,
        keep_last: int | None = None,
    ) -> SnapshotInfo:
        """Store (or replace) snapshot `version`; with JSON content `data`/`metadata` may be
        any JSON-able value (bytes are taken as encoded JSON), else bytes. With `keep_last`,
        only the `keep_last` highest versions of (source, stream) remain afterwards."""
        body = _RecordBody(
            source_uuid=source_uuid,
            stream_uuid=stream_uuid,
            version=version,
            data=_payload(data, content_type, "data"),
            metadata=_payload(metadata, content_type, "metadata"),
            content_type=content_type,
            keep_last=keep_last,
            timeout_ms=self._connection.server_timeout_ms,
        )
        subject = api_subject(self.store, Op.SNAPSHOT_RECORD)
        return await self._connection.request(subject, body, _info, write=True)

    async def read_snapshot(
        self,
        source_uuid: str,
        stream_uuid: str,
        version: int | Literal["latest"] = LATEST,
    ) -> RecordedSnapshot:
        """One version of a snapshot, or the highest (`"latest"`); raises `NotFound`."""
        request = SnapshotReadRequest(
            source_uuid=source_uuid,
            stream_uuid=stream_uuid,
            version=version,
            timeout_ms=self._connection.server_timeout_ms,
        )
        subject = api_subject(self.store, Op.SNAPSHOT_READ)
        return await self._connection.request(subject, request, _snapshot, idempotent=True)

    async def delete_snapshot(self, source_uuid: str, stream_uuid: str, version: int) -> None:
        """Delete one snapshot; raises `NotFound` when there is none."""
        request = SnapshotDeleteRequest(
            source_uuid=source_uuid,
            stream_uuid=stream_uuid,
            version=version,
            timeout_ms=self._connection.server_timeout_ms,
        )
        subject = api_subject(self.store, Op.SNAPSHOT_DELETE)
        await self._connection.request(subject, request, _deleted, write=True)

    async def list_snapshots(
        self,
        *,
        source_uuid: str | None = None,
        stream_uuid: str | None = None,
        after: SnapshotKey | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> SnapshotList:
        """One page of snapshots (without payloads) of a source, a stream, both, or the whole
        store; pass the page's `next` as `after` for the next one."""
        request = SnapshotListRequest(
            source_uuid=source_uuid,
            stream_uuid=stream_uuid,
            after=after,
            limit=limit,
            timeout_ms=self._connection.server_timeout_ms,
        )
        subject = api_subject(self.store, Op.SNAPSHOT_LIST)
        return await self._connection.request(subject, request, _list, idempotent=True)

    async def iter_snapshots(
        self,
        *,
        source_uuid: str | None = None,
        stream_uuid: str | None = None,
        page_size: int = DEFAULT_LIST_LIMIT,
    ) -> AsyncIterator[SnapshotInfo]:
        """Every snapshot `list_snapshots` selects, fetched a page at a time."""
        after: SnapshotKey | None = None
        while True:
            page = await self.list_snapshots(
                source_uuid=source_uuid, stream_uuid=stream_uuid, after=after, limit=page_size
            )
            for snapshot in page.snapshots:
                yield snapshot
            if page.next is None:
                return
            after = page.next
