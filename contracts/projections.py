"""Projections: requests, results and stored records (contract). See docs/projections.md.

A projection is a JavaScript query (KurrentDB's projection language) that the projection
service runs over a store's events, keeping a JSON state per partition and emitting or linking
events, each batch's effects in one log entry."""

from __future__ import annotations

from typing import Any, Final

import msgspec

STATUS_RUNNING: Final = "running"
STATUS_STOPPED: Final = "stopped"
STATUS_FAULTED: Final = "faulted"

START_AT_START: Final = "start"
START_AT_END: Final = "end"

SHARED_PARTITION: Final = ""
"""The partition key of an unpartitioned projection's one state."""

LINK_EVENT_TYPE: Final = "$>"
"""The type of the events `linkTo` writes; their data is `<version>@<stream>`."""
LINK_CONTENT_TYPE: Final = "text/plain"

MAX_NAME_BYTES = 200
MAX_QUERY_BYTES = 256 << 10
MAX_PARTITION_BYTES = 400
"""A partition key (a stream id, or what `partitionBy` returns) is at most this many bytes:
its LMDB key holds the projection's name too."""


class ProjectionCreateRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.projection_create`."""

    name: str
    query: str
    start: str = START_AT_START
    enabled: bool = True
    emit_enabled: bool = False
    timeout_ms: int | None = None


class ProjectionUpdateRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.projection_update`: a new query and/or `emit_enabled`; the state
    and checkpoint stay."""

    name: str
    query: str | None = None
    emit_enabled: bool | None = None
    timeout_ms: int | None = None


class ProjectionNameRequest(msgspec.Struct, kw_only=True):
    """`projection_info`, `_enable`, `_disable`, `_reset` and `_delete`: one projection."""

    name: str
    timeout_ms: int | None = None


class ProjectionListRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.projection_list`."""

    timeout_ms: int | None = None


class ProjectionStateRequest(msgspec.Struct, kw_only=True):
    """`projection_state` and `projection_result`: of one partition, or the shared state."""

    name: str
    partition: str | None = None
    timeout_ms: int | None = None


class ProjectionInfo(msgspec.Struct, kw_only=True):
    """A projection's definition and progress. `position` is the last position it processed,
    `lag` how far the store's log is past it, `reason` why it faulted (at `fault_position`)."""

    name: str
    status: str
    reason: str
    position: int
    lag: int
    events_processed: int
    events_emitted: int
    partitions: int
    enabled: bool
    emit_enabled: bool
    query: str
    fault_position: int | None = None
    epoch: int = 0
    """How many times it was reset (or restored): the ids of its emitted events depend on it."""


class ProjectionList(msgspec.Struct, kw_only=True):
    """Every projection of a store, by name."""

    projections: list[ProjectionInfo]


class ProjectionStateOut(msgspec.Struct, kw_only=True):
    """A partition's state (JSON; null before the projection has handled an event of it)."""

    name: str
    partition: str
    state: Any


class ProjectionResultOut(msgspec.Struct, kw_only=True):
    """A partition's result: its state through the query's `transformBy`/`filterBy`."""

    name: str
    partition: str
    result: Any


class ProjectionPartitionsRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.projection_partitions`: a page of a projection's partitions, in key
    order, after partition `after` (null: from the first)."""

    name: str
    after: str | None = None
    limit: int = 100
    timeout_ms: int | None = None


class ProjectionPartition(msgspec.Struct, kw_only=True):
    """One partition's state and result (JSON)."""

    partition: str
    state: Any
    result: Any


class ProjectionPartitions(msgspec.Struct, kw_only=True):
    """A page of partitions; `next` is the `after` of the next page, null at the end."""

    name: str
    partitions: list[ProjectionPartition]
    next: str | None = None


class ProjectionDeleted(msgspec.Struct, kw_only=True):
    """`projection_delete`'s reply."""

    name: str


class StoredProjection(msgspec.Struct, array_like=True, frozen=True):
    """A projection as a store keeps it (table `projections`): its definition, then its
    progress. `epoch` counts resets (emitted event ids depend on it), `revision` every change
    of definition, so a runner knows to start again."""

    query: str
    emit_enabled: bool
    enabled: bool
    epoch: int = 0
    revision: int = 0
    checkpoint: int = 0
    processed: int = 0
    emitted: int = 0
    partitions: int = 0
    reason: str = ""
    fault_position: int = 0


class StoredPartition(msgspec.Struct, array_like=True, frozen=True):
    """One partition's state and result, JSON text (empty: null)."""

    state: bytes
    result: bytes


stored_projection_decoder = msgspec.msgpack.Decoder(StoredProjection)
stored_partition_decoder = msgspec.msgpack.Decoder(StoredPartition)


def projection_status(stored: StoredProjection) -> str:
    """`running`, `stopped` or `faulted`."""
    if stored.reason:
        return STATUS_FAULTED
    return STATUS_RUNNING if stored.enabled else STATUS_STOPPED


def link_target(event_type: str, data: bytes) -> tuple[str, int] | None:
    """(stream, version) a link event (type `$>`, data `<version>@<stream>`) points to;
    None for any other event."""
    if event_type != LINK_EVENT_TYPE:
        return None
    version, at, stream = data.decode("utf-8", "replace").partition("@")
    if not at or not stream or not version.isdigit():
        return None
    return stream, int(version)
