"""Apply's part of a projection restore (`ProjectionRestoreOp`): the record and partition
states it stores, kept apart so `projection_apply.py` only hooks it in."""

from __future__ import annotations

from esdb.contracts.log import ProjectionRestoreOp
from esdb.contracts.projections import StoredPartition, StoredProjection


def restored_projection(op: ProjectionRestoreOp) -> StoredProjection:
    """The projection record the op restores (definition revision 0: a new definition)."""
    return StoredProjection(
        query=op.query,
        emit_enabled=op.emit_enabled,
        enabled=op.enabled,
        epoch=op.epoch,
        checkpoint=op.checkpoint,
        processed=op.processed,
        emitted=op.emitted,
        partitions=len({w.partition for w in op.partitions}),
        reason=op.reason,
        fault_position=op.fault_position,
    )


def restored_partitions(op: ProjectionRestoreOp) -> dict[str, StoredPartition]:
    """Each partition's state and result, by partition key."""
    return {w.partition: StoredPartition(w.state, w.result) for w in op.partitions}
