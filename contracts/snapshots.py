"""Snapshots of aggregates: requests, results and stored records (contract).

A snapshot is keyed by (`source_uuid`, `stream_uuid`, `version`); `data` and `metadata` travel
as event payloads do (JSON values for JSON content in a JSON request, base64 in JSON otherwise,
raw bytes in msgpack). See docs/snapshots.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import msgspec

from esdb.contracts.api import JSON_CONTENT_TYPE

LATEST: Final = "latest"
"""`snapshot_read`'s `version` for the highest version of a (source, stream)."""

MAX_ID_BYTES = 200
"""`source_uuid` and `stream_uuid` are 1-200 bytes of UTF-8: a key holds both and must stay
under LMDB's 511-byte key limit."""

MAX_CONTENT_TYPE_BYTES = 128
MAX_VERSION = (1 << 63) - 1
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1_000

SnapshotVersionIn = int | str
"""An exact version (>= 0) or `"latest"`."""


class SnapshotKey(msgspec.Struct, kw_only=True, frozen=True):
    """Where a snapshot lives; also the `after`/`next` cursor of `snapshot_list`."""

    source_uuid: str
    stream_uuid: str
    version: int


class SnapshotRecordRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.snapshot_record`: store (or replace) one snapshot; with `keep_last`,
    keep only the `keep_last` highest versions of its (source, stream) afterwards."""

    source_uuid: str
    stream_uuid: str
    version: int
    data: msgspec.Raw = msgspec.Raw()
    metadata: msgspec.Raw = msgspec.Raw()
    content_type: str = JSON_CONTENT_TYPE
    keep_last: int | None = None
    timeout_ms: int | None = None


class SnapshotReadRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.snapshot_read`: one version, or the latest."""

    source_uuid: str
    stream_uuid: str
    version: SnapshotVersionIn = LATEST
    timeout_ms: int | None = None


class SnapshotDeleteRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.snapshot_delete`: one exact version."""

    source_uuid: str
    stream_uuid: str
    version: int
    timeout_ms: int | None = None


class SnapshotListRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.snapshot_list`: snapshots in (source, stream, version) order, or
    (stream, source, version) order when only `stream_uuid` is given; paged by `after`."""

    source_uuid: str | None = None
    stream_uuid: str | None = None
    after: SnapshotKey | None = None
    limit: int = DEFAULT_LIST_LIMIT
    timeout_ms: int | None = None


class SnapshotOut(msgspec.Struct, kw_only=True):
    """A snapshot as read back; `data`/`metadata` are encoded as in `contracts.api.EventOut`."""

    source_uuid: str
    stream_uuid: str
    version: int
    data: msgspec.Raw | bytes | None
    metadata: msgspec.Raw | bytes | None
    content_type: str
    created: datetime


class SnapshotInfo(msgspec.Struct, kw_only=True):
    """A snapshot without its payload: the result of `snapshot_record`, an item of a list.
    `size` is the stored bytes of data plus metadata."""

    source_uuid: str
    stream_uuid: str
    version: int
    content_type: str
    size: int
    created: datetime


class SnapshotDeleted(msgspec.Struct, kw_only=True):
    """The result of `snapshot_delete`."""

    source_uuid: str
    stream_uuid: str
    version: int


class SnapshotList(msgspec.Struct, kw_only=True):
    """A page of snapshots; `next` is the `after` of the next page, null at the end."""

    snapshots: list[SnapshotInfo]
    next: SnapshotKey | None


class StoredSnapshot(msgspec.Struct, array_like=True, frozen=True):
    """A snapshot's payload as the `snapshots` table keeps it."""

    data: bytes
    metadata: bytes
    content_type: str
    created_us: int


class StoredSummary(msgspec.Struct, array_like=True, frozen=True):
    """What the two list indexes of the `snapshots` table keep per snapshot, so that listing
    never reads payloads."""

    content_type: str
    size: int
    created_us: int
