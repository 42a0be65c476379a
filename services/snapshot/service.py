"""The snapshot service's core: requests against this node's stores and the replicated log.

Writes become log ops (`SnapshotOp`, `SnapshotDeleteOp`) that every node applies; reads come
from this node's LMDB once it has applied the log as it stood when the request arrived.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from esdb.contracts.api import JSON_CONTENT_TYPE
from esdb.contracts.errors import InvalidRequest, NotFound
from esdb.contracts.log import LogOp, SnapshotDeleteOp, SnapshotOp
from esdb.contracts.snapshots import (
    LATEST,
    SnapshotDeleted,
    SnapshotDeleteRequest,
    SnapshotInfo,
    SnapshotKey,
    SnapshotList,
    SnapshotListRequest,
    SnapshotOut,
    SnapshotReadRequest,
    SnapshotRecordRequest,
    StoredSnapshot,
    StoredSummary,
)
from esdb.contracts.subjects import Op
from esdb.services.snapshot import requests
from esdb.shared.freshness import Deadline
from esdb.shared.storage import item_keys
from esdb.shared.storage.port import StoreReader
from esdb.shared.wire import Codec, payload_bytes

StoreSource = Callable[[str], StoreReader]
"""A store of this node by name; `NotFound` when it does not exist (yet)."""
SubmitOps = Callable[[list[LogOp], float], Awaitable[None]]
"""Log ops in one entry within a timeout (s); returns once the leader applied them."""
CatchUp = Callable[[float], Awaitable[None]]
"""Wait (bounded, s) until this node applied every entry committed before the call."""
Answer = Callable[[str, Any, Codec], Awaitable[msgspec.Struct]]
"""Answer a decoded request on a store, in the request's codec."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_stored = msgspec.msgpack.Decoder(StoredSnapshot)
_summary = msgspec.msgpack.Decoder(StoredSummary)


def _now_us() -> int:
    return time.time_ns() // 1000


def _created(created_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=created_us)


class SnapshotService:
    """`snapshot_record`, `snapshot_read`, `snapshot_delete` and `snapshot_list` for every
    store of one node."""

    def __init__(
        self,
        stores: StoreSource,
        submit: SubmitOps,
        catch_up: CatchUp,
        *,
        max_bytes: int,
        timeout_ms: int,
        now_us: Callable[[], int] = _now_us,
    ) -> None:
        self._stores = stores
        self._submit = submit
        self._catch_up = catch_up
        self._max_bytes = max_bytes
        self._timeout_ms = timeout_ms
        self._now_us = now_us

    def operations(self) -> dict[str, tuple[type[Any], Answer]]:
        """Each public operation's request type and the method that answers it."""
        return {
            Op.SNAPSHOT_RECORD: (SnapshotRecordRequest, self.record),
            Op.SNAPSHOT_READ: (SnapshotReadRequest, self.read),
            Op.SNAPSHOT_DELETE: (SnapshotDeleteRequest, self.delete),
            Op.SNAPSHOT_LIST: (SnapshotListRequest, self.list_page),
        }

    async def _reader(self, store: str, deadline: Deadline) -> StoreReader:
        await self._catch_up(deadline.left())
        return self._stores(store)

    async def record(
        self, store: str, request: SnapshotRecordRequest, codec: Codec
    ) -> SnapshotInfo:
        """Store (or replace) one snapshot, then apply its retention."""
        source = requests.check_id(request.source_uuid, "source_uuid")
        stream = requests.check_id(request.stream_uuid, "stream_uuid")
        version = requests.check_version(request.version)
        content_type = requests.check_content_type(request.content_type)
        keep_last = requests.check_keep_last(request.keep_last)
        deadline = Deadline(request.timeout_ms, self._timeout_ms)
        if not request.data:
            raise InvalidRequest("data must be given", field="data")
        data = payload_bytes(request.data, content_type, codec, "data")
        metadata = payload_bytes(request.metadata, content_type, codec, "metadata")
        requests.check_size(data, metadata, self._max_bytes)
        await self._reader(store, deadline)  # NotFound for a store that does not exist
        created_us = self._now_us()
        op = SnapshotOp(
            store=store,
            source_uuid=source,
            stream_uuid=stream,
            version=version,
            data=data,
            metadata=metadata,
            content_type=content_type,
            created_us=created_us,
            keep_last=keep_last,
        )
        await self._submit([op], deadline.left())
        return SnapshotInfo(
            source_uuid=source,
            stream_uuid=stream,
            version=version,
            content_type=content_type,
            size=len(data) + len(metadata),
            created=_created(created_us),
        )

    async def read(self, store: str, request: SnapshotReadRequest, codec: Codec) -> SnapshotOut:
        """One version of a snapshot, or its latest."""
        source = requests.check_id(request.source_uuid, "source_uuid")
        stream = requests.check_id(request.stream_uuid, "stream_uuid")
        version = requests.read_version(request.version)
        deadline = Deadline(request.timeout_ms, self._timeout_ms)
        reader = await self._reader(store, deadline)
        table = item_keys.SNAPSHOTS
        if version is None:
            prefix = item_keys.snapshot_data_prefix(source, stream)
            found = reader.items(table, prefix, limit=1, backward=True)
            key, raw = found[0] if found else (b"", None)
        else:
            key = item_keys.snapshot_data_key(source, stream, version)
            raw = reader.get_item(table, key)
        if raw is None:
            raise _not_found(source, stream, LATEST if version is None else version)
        return snapshot_out(
            item_keys.snapshot_version(key), source, stream, _stored.decode(raw), codec
        )

    async def delete(
        self, store: str, request: SnapshotDeleteRequest, codec: Codec
    ) -> SnapshotDeleted:
        """Delete one snapshot; `NotFound` when this node (caught up) does not have it."""
        source = requests.check_id(request.source_uuid, "source_uuid")
        stream = requests.check_id(request.stream_uuid, "stream_uuid")
        version = requests.check_version(request.version)
        deadline = Deadline(request.timeout_ms, self._timeout_ms)
        reader = await self._reader(store, deadline)
        key = item_keys.snapshot_source_key(source, stream, version)
        if reader.get_item(item_keys.SNAPSHOTS, key) is None:
            raise _not_found(source, stream, version)
        await self._submit([SnapshotDeleteOp(store, source, stream, version)], deadline.left())
        return SnapshotDeleted(source_uuid=source, stream_uuid=stream, version=version)

    async def list_page(
        self, store: str, request: SnapshotListRequest, codec: Codec
    ) -> SnapshotList:
        """A page of snapshots (without payloads) of a source, a stream, both, or all."""
        source, stream = request.source_uuid, request.stream_uuid
        if source is not None:
            requests.check_id(source, "source_uuid")
        if stream is not None:
            requests.check_id(stream, "stream_uuid")
        limit = requests.check_limit(request.limit)
        after = request.after
        if after is not None:
            requests.check_id(after.source_uuid, "after.source_uuid")
            requests.check_id(after.stream_uuid, "after.stream_uuid")
            requests.check_version(after.version, "after.version")
        deadline = Deadline(request.timeout_ms, self._timeout_ms)
        reader = await self._reader(store, deadline)
        by_stream = source is None and stream is not None
        if by_stream:
            assert stream is not None
            prefix = item_keys.snapshot_stream_prefix(stream)
            key_of = item_keys.snapshot_stream_key
        else:
            prefix = item_keys.snapshot_source_prefix(source, stream)
            key_of = item_keys.snapshot_source_key
        after_key = None
        if after is not None:
            after_key = key_of(after.source_uuid, after.stream_uuid, after.version)
        page = reader.items(item_keys.SNAPSHOTS, prefix, after=after_key, limit=limit + 1)
        snapshots = [_info(key, raw) for key, raw in page[:limit]]
        last = snapshots[-1] if len(page) > limit else None
        next_key = None
        if last is not None:
            next_key = SnapshotKey(
                source_uuid=last.source_uuid, stream_uuid=last.stream_uuid, version=last.version
            )
        return SnapshotList(snapshots=snapshots, next=next_key)


def snapshot_out(
    version: int, source: str, stream: str, stored: StoredSnapshot, codec: Codec
) -> SnapshotOut:
    """The wire form of a stored snapshot for a reply in `codec` (payloads as events carry
    them: JSON values for JSON content in JSON, bytes otherwise)."""
    data: msgspec.Raw | bytes | None
    metadata: msgspec.Raw | bytes | None
    if codec is Codec.JSON and stored.content_type == JSON_CONTENT_TYPE:
        data = msgspec.Raw(stored.data) if stored.data else None
        metadata = msgspec.Raw(stored.metadata) if stored.metadata else None
    else:
        data, metadata = stored.data, stored.metadata
    return SnapshotOut(
        source_uuid=source,
        stream_uuid=stream,
        version=version,
        data=data,
        metadata=metadata,
        content_type=stored.content_type,
        created=_created(stored.created_us),
    )


def _info(key: bytes, raw: bytes) -> SnapshotInfo:
    source, stream, version = item_keys.snapshot_of_key(key)
    summary = _summary.decode(raw)
    return SnapshotInfo(
        source_uuid=source,
        stream_uuid=stream,
        version=version,
        content_type=summary.content_type,
        size=summary.size,
        created=_created(summary.created_us),
    )


def _not_found(source: str, stream: str, version: int | str) -> NotFound:
    return NotFound(
        f"no snapshot {version} of source {source!r}, stream {stream!r}",
        field="version",
        source_uuid=source,
        stream_uuid=stream,
        version=version,
    )
