"""Apply of projection ops: definitions, and each batch's progress and partition states.

Deterministic like the rest of apply: a commit lands only if the projection is still in the
epoch, at the definition revision and at the checkpoint the commit started from, which every
replica decides alike."""

from __future__ import annotations

import msgspec

from esdb.contracts.log import (
    PROJECTION_CREATE,
    PROJECTION_DELETE,
    PROJECTION_DISABLE,
    PROJECTION_ENABLE,
    PROJECTION_RESET,
    PROJECTION_UPDATE,
    ProjectionCommitOp,
    ProjectionDefineOp,
    ProjectionOp,
    ProjectionRestoreOp,
)
from esdb.contracts.projections import (
    StoredPartition,
    StoredProjection,
    stored_projection_decoder,
)
from esdb.services.writer.projection_restore import restored_partitions, restored_projection
from esdb.shared.storage import item_keys
from esdb.shared.storage.port import StoreReader, StoreTransaction

_encoder = msgspec.msgpack.Encoder()
_TABLE = item_keys.PROJECTIONS


class ProjectionWrites:
    """The projection ops of one store transaction. A transaction cannot be read, so records
    written in it are kept here and read before the committed state."""

    def __init__(self, store: StoreReader, txn: StoreTransaction) -> None:
        self._store = store
        self._txn = txn
        self._written: dict[str, StoredProjection | None] = {}
        self._partitions: dict[str, set[str]] = {}

    def apply(self, op: ProjectionOp) -> None:
        """Apply one definition change, commit or restore."""
        current = self._record(op.name)
        if isinstance(op, ProjectionCommitOp):
            self._commit(op, current)
        elif isinstance(op, ProjectionRestoreOp):
            self._restore(op, current)
        else:
            self._define(op, current)

    def _record(self, name: str) -> StoredProjection | None:
        if name in self._written:
            return self._written[name]
        raw = self._store.get_item(_TABLE, item_keys.projection_key(name))
        return None if raw is None else stored_projection_decoder.decode(raw)

    def _put(self, name: str, record: StoredProjection | None) -> None:
        key = item_keys.projection_key(name)
        if record is None:
            self._txn.delete_item(_TABLE, key)
        else:
            self._txn.put_item(_TABLE, key, _encoder.encode(record))
        self._written[name] = record

    def _define(self, op: ProjectionDefineOp, current: StoredProjection | None) -> None:
        replace = msgspec.structs.replace
        if op.action == PROJECTION_CREATE:
            if current is not None:
                return  # a create raced another: the first one stands
            self._put(
                op.name,
                StoredProjection(
                    query=op.query or "",
                    emit_enabled=bool(op.emit_enabled),
                    enabled=op.enabled,
                    checkpoint=op.start_position,
                ),
            )
            return
        if current is None:
            return  # deleted since the op was logged
        revision = current.revision + 1
        if op.action == PROJECTION_DELETE:
            self._txn.delete_items(_TABLE, item_keys.partition_prefix(op.name))
            self._put(op.name, None)
        elif op.action == PROJECTION_UPDATE:
            self._put(
                op.name,
                replace(
                    current,
                    query=current.query if op.query is None else op.query,
                    emit_enabled=(
                        current.emit_enabled if op.emit_enabled is None else op.emit_enabled
                    ),
                    revision=revision,
                    reason="",
                    fault_position=0,
                ),
            )
        elif op.action == PROJECTION_ENABLE:
            self._put(op.name, replace(current, enabled=True, revision=revision, reason=""))
        elif op.action == PROJECTION_DISABLE:
            self._put(op.name, replace(current, enabled=False, revision=revision))
        elif op.action == PROJECTION_RESET:
            self._txn.delete_items(_TABLE, item_keys.partition_prefix(op.name))
            self._put(
                op.name,
                StoredProjection(
                    query=current.query,
                    emit_enabled=current.emit_enabled,
                    enabled=current.enabled,
                    epoch=current.epoch + 1,
                    revision=revision,
                ),
            )
        # An unknown action (a newer writer's) changes nothing, on every replica alike.

    def _restore(self, op: ProjectionRestoreOp, current: StoredProjection | None) -> None:
        if current is not None:
            return  # restored already, or defined since: what is there stands
        self._txn.delete_items(_TABLE, item_keys.partition_prefix(op.name))
        for partition, stored in restored_partitions(op).items():
            key = item_keys.partition_key(op.name, partition)
            self._txn.put_item(_TABLE, key, _encoder.encode(stored))
        self._partitions[op.name] = set(restored_partitions(op))
        self._put(op.name, restored_projection(op))

    def _commit(self, op: ProjectionCommitOp, current: StoredProjection | None) -> None:
        if (
            current is None
            or current.epoch != op.epoch
            or current.revision != op.revision
            or current.checkpoint != op.from_checkpoint
        ):
            return  # redefined, reset, deleted or moved on since: a late runner's commit
        added = 0
        seen = self._partitions.setdefault(op.name, set())
        for write in op.partitions:
            key = item_keys.partition_key(op.name, write.partition)
            if write.partition not in seen and self._store.get_item(_TABLE, key) is None:
                added += 1
            seen.add(write.partition)
            stored = StoredPartition(write.state, write.result)
            self._txn.put_item(_TABLE, key, _encoder.encode(stored))
        self._put(
            op.name,
            msgspec.structs.replace(
                current,
                checkpoint=op.checkpoint,
                processed=current.processed + op.processed,
                emitted=current.emitted + op.emitted,
                partitions=current.partitions + added,
                reason=op.reason,
                fault_position=op.fault_position,
            ),
        )
