"""Entries of the replicated log (contract between writers): fully stamped, so apply is pure."""

from __future__ import annotations

from typing import Any

import msgspec


class StampedEvent(msgspec.Struct, array_like=True, frozen=True):
    """An event with everything non-deterministic decided by the leader."""

    event_id: bytes
    type: str
    data: bytes
    metadata: bytes
    content_type: str
    created_us: int
    tags: tuple[str, ...] = ()
    """DCB tags (events of `dcb_append` only); trailing, so entries without them decode."""


class AppendOp(msgspec.Struct, tag="append", array_like=True, frozen=True):
    """Events for one stream at `first_version`, taking positions from `first_position`."""

    store: str
    stream: str
    first_version: int
    first_position: int
    events: list[StampedEvent]


class CreateStoreOp(msgspec.Struct, tag="create_store", array_like=True, frozen=True):
    """Create a store (its own LMDB environment) on every node."""

    store: str
    config: dict[str, Any] = {}


class RemoveStoreOp(msgspec.Struct, tag="remove_store", array_like=True, frozen=True):
    """Remove a store and its data on every node."""

    store: str


class StoreConfigOp(msgspec.Struct, tag="store_config", array_like=True, frozen=True):
    """Replace a store's configuration (description, tags)."""

    store: str
    config: dict[str, Any]


class CheckpointOp(msgspec.Struct, tag="checkpoint", array_like=True, frozen=True):
    """Record that consumer `name` (the emitter, a subscription) is done up to `position`."""

    store: str
    name: str
    position: int


class SubscriptionOp(msgspec.Struct, tag="subscription", array_like=True, frozen=True):
    """Create persistent subscription `name` (`definition`, an encoded
    `SubscriptionDefinition`), or delete it with its parked events (`definition` empty)."""

    store: str
    name: str
    definition: bytes


class ParkOp(msgspec.Struct, tag="park", array_like=True, frozen=True):
    """Park events of subscription `name`: they wait until replayed, not delivered again."""

    store: str
    name: str
    positions: list[int]
    reason: str
    parked_us: int


class UnparkOp(msgspec.Struct, tag="unpark", array_like=True, frozen=True):
    """Parked events of subscription `name` that a replay settled."""

    store: str
    name: str
    positions: list[int]


class SnapshotOp(msgspec.Struct, tag="snapshot", array_like=True, frozen=True):
    """Record snapshot `version` of (`source_uuid`, `stream_uuid`), replacing one at the same
    key; with `keep_last` > 0, then delete all but the `keep_last` highest versions of that
    (source, stream)."""

    store: str
    source_uuid: str
    stream_uuid: str
    version: int
    data: bytes
    metadata: bytes
    content_type: str
    created_us: int
    keep_last: int = 0


class SnapshotDeleteOp(msgspec.Struct, tag="snapshot_delete", array_like=True, frozen=True):
    """Delete one snapshot (nothing happens when it is absent)."""

    store: str
    source_uuid: str
    stream_uuid: str
    version: int


class StreamMetaOp(msgspec.Struct, tag="stream_meta", array_like=True, frozen=True):
    """Set a stream's lifecycle `state` and `metadata` (its version stays)."""

    store: str
    stream: str
    state: str
    metadata: dict[str, Any]


class ScavengeOp(msgspec.Struct, tag="scavenge", array_like=True, frozen=True):
    """Remove the stored events of `stream` below `below_version` (no read returns them)."""

    store: str
    stream: str
    below_version: int


PROJECTION_CREATE = "create"
PROJECTION_UPDATE = "update"
PROJECTION_ENABLE = "enable"
PROJECTION_DISABLE = "disable"
PROJECTION_RESET = "reset"
PROJECTION_DELETE = "delete"


class ProjectionDefineOp(msgspec.Struct, tag="projection_define", array_like=True, frozen=True):
    """Change projection `name`'s definition (`action`, one of the `PROJECTION_*` above).
    `create` starts it at `start_position`; `update` sets `query` and/or `emit_enabled` (None
    keeps it); `reset` clears its states and starts it again from 0 in a new epoch."""

    store: str
    name: str
    action: str
    query: str | None = None
    emit_enabled: bool | None = None
    enabled: bool = True
    start_position: int = 0


class PartitionWrite(msgspec.Struct, array_like=True, frozen=True):
    """A partition's new state and result (JSON text)."""

    partition: str
    state: bytes
    result: bytes


class ProjectionCommitOp(msgspec.Struct, tag="projection_commit", array_like=True, frozen=True):
    """A projection's progress over source events up to `checkpoint`, from `from_checkpoint`
    in `epoch` under definition `revision`: the new states of the partitions it touched and
    its counts, or (`reason`) the fault it stopped at. Its emitted events travel as
    `AppendOp`s of the same entry (one store transaction). Applied only if the projection is
    still at (`epoch`, `revision`, `from_checkpoint`)."""

    store: str
    name: str
    epoch: int
    from_checkpoint: int
    checkpoint: int
    processed: int
    emitted: int
    partitions: list[PartitionWrite]
    reason: str = ""
    fault_position: int = 0
    revision: int = 0


class ProjectionRestoreOp(msgspec.Struct, tag="projection_restore", array_like=True, frozen=True):
    """Restore (`_sys.projection_restore`) projection `name` as an export saw it: its
    definition, progress and every partition's state, in the store's own positions. Applied
    only if the store has no projection of that name (a re-run changes nothing)."""

    store: str
    name: str
    query: str
    emit_enabled: bool
    enabled: bool
    epoch: int
    checkpoint: int
    processed: int
    emitted: int
    partitions: list[PartitionWrite]
    reason: str = ""
    fault_position: int = 0


ProjectionOp = ProjectionDefineOp | ProjectionCommitOp | ProjectionRestoreOp


class RestoreStreamOp(msgspec.Struct, tag="restore_stream", array_like=True, frozen=True):
    """Restore (`_sys.store_restore`) one stream as an export saw it: `events` at versions
    from `first_version` (which may skip versions the source hid) and positions from
    `first_position`, then the stream at `version` in `state` with `metadata`."""

    store: str
    stream: str
    first_version: int
    first_position: int
    events: list[StampedEvent]
    version: int
    state: str
    metadata: dict[str, Any]


StoreItemOp = SubscriptionOp | ParkOp | UnparkOp | SnapshotOp | SnapshotDeleteOp
LogOp = (
    AppendOp
    | StreamMetaOp
    | ScavengeOp
    | CreateStoreOp
    | RemoveStoreOp
    | StoreConfigOp
    | CheckpointOp
    | SubscriptionOp
    | ParkOp
    | UnparkOp
    | SnapshotOp
    | SnapshotDeleteOp
    | ProjectionDefineOp
    | ProjectionCommitOp
    | ProjectionRestoreOp
    | RestoreStreamOp
)


class LogEntry(msgspec.Struct, array_like=True, frozen=True):
    """One message of the log stream: a batch of ops applied in one transaction per store."""

    ops: list[LogOp]
    leader: str = ""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(LogEntry)


def encode_entry(entry: LogEntry) -> bytes:
    """Serialize a log entry."""
    return _encoder.encode(entry)


def decode_entry(data: bytes) -> LogEntry:
    """Deserialize a log entry; raises msgspec.DecodeError on a corrupt entry."""
    return _decoder.decode(data)
