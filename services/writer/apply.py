"""Deterministic apply: a pure function of (state, entry), shared by the leader and replay."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from esdb.contracts.dcb import DCB_STREAM
from esdb.contracts.log import (
    AppendOp,
    CheckpointOp,
    CreateStoreOp,
    LogEntry,
    ParkOp,
    ProjectionCommitOp,
    ProjectionDefineOp,
    ProjectionOp,
    ProjectionRestoreOp,
    RemoveStoreOp,
    RestoreStreamOp,
    ScavengeOp,
    SnapshotDeleteOp,
    SnapshotOp,
    StoreItemOp,
    StreamMetaOp,
    SubscriptionOp,
    UnparkOp,
    encode_entry,
)
from esdb.contracts.snapshots import StoredSnapshot, StoredSummary
from esdb.contracts.subscriptions import ParkedRecord
from esdb.services.writer.dcb_apply import index_dcb_append
from esdb.services.writer.projection_apply import ProjectionWrites
from esdb.services.writer.restore_apply import restore_problem, restored_append, restored_state
from esdb.shared.storage import item_keys
from esdb.shared.storage.catalog import Catalog
from esdb.shared.storage.port import StoreReader, StoreTransaction
from esdb.shared.storage.records import STREAM_ACTIVE, EventRecord, StreamState

_parked_encoder = msgspec.msgpack.Encoder()
_snapshot_encoder = msgspec.msgpack.Encoder()
_RETENTION_PAGE = 1_000


StoreOp = AppendOp | StreamMetaOp | ScavengeOp | StoreItemOp | ProjectionOp | RestoreStreamOp
"""An op applied inside one store's transaction."""
_STORE_OPS = (
    AppendOp,
    StreamMetaOp,
    ScavengeOp,
    SubscriptionOp,
    ParkOp,
    UnparkOp,
    SnapshotOp,
    SnapshotDeleteOp,
    ProjectionDefineOp,
    ProjectionCommitOp,
    ProjectionRestoreOp,
    RestoreStreamOp,
)


class ApplyError(Exception):
    """An entry does not fit the state it is applied to; the writer must stop, not skip it."""


def apply_entry(catalog: Catalog, sequence: int, entry: LogEntry, raw: bytes | None = None) -> None:
    """Apply log entry `sequence` to every store it touches, each in one transaction.

    A store that already applied `sequence` (a crash between stores) is left as it is,
    so applying an entry twice is harmless."""
    if sequence != catalog.applied_sequence() + 1:
        raise ApplyError(f"entry {sequence} follows {catalog.applied_sequence()}")
    created: dict[str, dict[str, Any]] = {}
    removed: list[str] = []
    configured: dict[str, dict[str, Any]] = {}
    checkpoints: dict[tuple[str, str], int] = {}
    by_store: dict[str, list[StoreOp]] = {}
    for op in entry.ops:  # one pass: an entry can carry thousands of appends
        if isinstance(op, _STORE_OPS):
            by_store.setdefault(op.store, []).append(op)
        elif isinstance(op, CheckpointOp):
            checkpoints[(op.store, op.name)] = op.position
        elif isinstance(op, CreateStoreOp):
            if not catalog.exists(op.store):
                created[op.store] = op.config
        elif isinstance(op, RemoveStoreOp):
            removed.append(op.store)
        else:
            configured[op.store] = op.config
    if created:
        catalog.record(sequence - 1, list(created), configs=created)
    # Data first, registration last (in the final record): a crash in between replays this.
    for name in removed:
        catalog.drop(name)
    for name, ops in by_store.items():
        if name in removed:
            continue
        if not catalog.exists(name) and not any(
            isinstance(op, AppendOp | RestoreStreamOp) for op in ops
        ):
            continue  # items of a store removed since they were logged: nothing to keep
        store = catalog.get(name)
        if store.applied_sequence() >= sequence:
            continue
        next_position = store.last_position() + 1
        with store.transaction(sequence) as txn:
            versions: dict[str, StreamState] = {}
            snapshots = _SnapshotWrites(store, txn)
            projections = ProjectionWrites(store, txn)
            for op in ops:
                if isinstance(op, AppendOp):
                    state = versions.get(op.stream) or txn.stream_state(op.stream) or StreamState()
                    next_position = _apply_append(txn, op, state, next_position)
                    # Appending to a soft-deleted stream brings it back; its old events stay
                    # hidden behind the `truncate_before` the delete set.
                    versions[op.stream] = StreamState(
                        op.first_version + len(op.events) - 1, STREAM_ACTIVE, state.metadata
                    )
                elif isinstance(op, SnapshotOp | SnapshotDeleteOp):
                    snapshots.apply(op)
                elif isinstance(op, ScavengeOp):
                    for record in store.read_stream(
                        op.stream, 0, backward=False, limit=op.below_version
                    ):
                        if record.version < op.below_version:
                            txn.delete_event(record)
                elif isinstance(op, RestoreStreamOp):
                    state = versions.get(op.stream) or txn.stream_state(op.stream) or StreamState()
                    problem = restore_problem(op, state, next_position)
                    if problem is not None:
                        raise ApplyError(problem)
                    if op.events:  # stored as an append would, above the stream's version
                        below = StreamState(op.first_version - 1)
                        next_position = _apply_append(
                            txn, restored_append(op), below, next_position
                        )
                    versions[op.stream] = restored_state(op)
                elif isinstance(op, StreamMetaOp):
                    known = versions.get(op.stream) or txn.stream_state(op.stream)
                    version = StreamState().version if known is None else known.version
                    versions[op.stream] = StreamState(version, op.state, op.metadata)
                elif isinstance(op, ProjectionOp):
                    projections.apply(op)
                else:
                    _apply_item(txn, op)
            for stream, state in versions.items():
                txn.put_stream_state(stream, state)
    data = encode_entry(entry) if raw is None else raw
    catalog.record(
        sequence,
        [],
        log_hash=chain_hash(catalog.log_hash(), sequence, data),
        checkpoints=checkpoints,
        configs={n: c for n, c in configured.items() if catalog.exists(n) and n not in removed},
        removed=removed,
    )


def chain_hash(previous: bytes, sequence: int, entry: bytes) -> bytes:
    """The running hash of the log after the entry with bytes `entry`: equal on every replica
    at equal sequence, since all of them hash the bytes the log holds."""
    digest = hashlib.blake2b(previous, digest_size=16)
    digest.update(sequence.to_bytes(8, "big"))
    digest.update(entry)
    return digest.digest()


def _apply_item(txn: StoreTransaction, op: SubscriptionOp | ParkOp | UnparkOp) -> None:
    if isinstance(op, SubscriptionOp):
        key = item_keys.subscription_key(op.name)
        txn.delete_items(item_keys.PARKED, item_keys.parked_prefix(op.name))
        if op.definition:
            txn.put_item(item_keys.SUBSCRIPTIONS, key, op.definition)
        else:
            txn.delete_item(item_keys.SUBSCRIPTIONS, key)
    elif isinstance(op, ParkOp):
        parked = _parked_encoder.encode(ParkedRecord(op.reason, op.parked_us))
        for position in op.positions:
            txn.put_item(item_keys.PARKED, item_keys.parked_key(op.name, position), parked)
    else:
        for position in op.positions:
            txn.delete_item(item_keys.PARKED, item_keys.parked_key(op.name, position))


class _SnapshotWrites:
    """The snapshot ops of one store transaction. Retention reads the versions a (source,
    stream) has; the transaction cannot be read, so the versions written or deleted in it are
    tracked here and laid over the committed state."""

    def __init__(self, store: StoreReader, txn: StoreTransaction) -> None:
        self._store = store
        self._txn = txn
        self._changed: dict[tuple[str, str], dict[int, bool]] = {}

    def apply(self, op: SnapshotOp | SnapshotDeleteOp) -> None:
        """Record or delete one snapshot, then apply the record's retention."""
        if isinstance(op, SnapshotDeleteOp):
            self._delete(op.source_uuid, op.stream_uuid, op.version)
            return
        size = len(op.data) + len(op.metadata)
        summary = _snapshot_encoder.encode(StoredSummary(op.content_type, size, op.created_us))
        stored = StoredSnapshot(op.data, op.metadata, op.content_type, op.created_us)
        source, stream, version = op.source_uuid, op.stream_uuid, op.version
        table = item_keys.SNAPSHOTS
        self._txn.put_item(
            table,
            item_keys.snapshot_data_key(source, stream, version),
            _snapshot_encoder.encode(stored),
        )
        self._txn.put_item(table, item_keys.snapshot_source_key(source, stream, version), summary)
        self._txn.put_item(table, item_keys.snapshot_stream_key(source, stream, version), summary)
        self._changed.setdefault((source, stream), {})[version] = True
        if op.keep_last > 0:
            for old in self._versions(source, stream)[op.keep_last :]:
                self._delete(source, stream, old)

    def _delete(self, source: str, stream: str, version: int) -> None:
        table = item_keys.SNAPSHOTS
        self._txn.delete_item(table, item_keys.snapshot_data_key(source, stream, version))
        self._txn.delete_item(table, item_keys.snapshot_source_key(source, stream, version))
        self._txn.delete_item(table, item_keys.snapshot_stream_key(source, stream, version))
        self._changed.setdefault((source, stream), {})[version] = False

    def _versions(self, source: str, stream: str) -> list[int]:
        """Every version of (source, stream) as of this op, highest first."""
        prefix = item_keys.snapshot_source_prefix(source, stream)
        found: set[int] = set()
        after: bytes | None = None
        while True:
            page = self._store.items(
                item_keys.SNAPSHOTS, prefix, after=after, limit=_RETENTION_PAGE
            )
            found.update(item_keys.snapshot_version(key) for key, _ in page)
            if len(page) < _RETENTION_PAGE:
                break
            after = page[-1][0]
        for version, present in self._changed.get((source, stream), {}).items():
            if present:
                found.add(version)
            else:
                found.discard(version)
        return sorted(found, reverse=True)


def _apply_append(
    txn: StoreTransaction, op: AppendOp, state: StreamState, next_position: int
) -> int:
    if op.first_version != state.version + 1 or op.first_position != next_position:
        raise ApplyError(
            f"append to {op.stream!r} at version {op.first_version}/position "
            f"{op.first_position} does not follow {state.version}/{next_position - 1}"
        )
    for offset, event in enumerate(op.events):
        txn.put_event(
            EventRecord(
                event_id=event.event_id,
                stream=op.stream,
                version=op.first_version + offset,
                position=op.first_position + offset,
                type=event.type,
                data=event.data,
                metadata=event.metadata,
                content_type=event.content_type,
                created_us=event.created_us,
                tags=event.tags,
            )
        )
    if op.stream == DCB_STREAM:
        index_dcb_append(txn, op)
    return next_position + len(op.events)
