"""`_sys.projection_restore` (an admin's, through `esdb import`): a projection put back with
its definition, progress and partition states, in the store's own positions, as one log op."""

from __future__ import annotations

import msgspec

from esdb.contracts.errors import InvalidRequest
from esdb.contracts.log import PartitionWrite, ProjectionRestoreOp
from esdb.contracts.projections import MAX_PARTITION_BYTES
from esdb.contracts.restore import ProjectionRestoreRequest

_json = msgspec.json.Encoder()


def restore_op(
    store: str, request: ProjectionRestoreRequest, last_position: int
) -> ProjectionRestoreOp:
    """The op restoring the request's projection (name and query checked by the caller) in a
    store whose last position is `last_position`; every rejection names its field."""
    if not 0 <= request.checkpoint <= last_position:
        raise InvalidRequest(
            f"checkpoint must be 0 to the store's last position ({last_position})",
            field="checkpoint",
        )
    for field in ("epoch", "events_processed", "events_emitted", "fault_position"):
        if getattr(request, field) < 0:
            raise InvalidRequest(f"{field} must be >= 0", field=field)
    writes: dict[str, PartitionWrite] = {}
    for index, item in enumerate(request.partitions):
        where = f"partitions[{index}]"
        if len(item.partition.encode()) > MAX_PARTITION_BYTES or "\x00" in item.partition:
            raise InvalidRequest(
                f"a partition key is at most {MAX_PARTITION_BYTES} bytes, without NUL",
                field=f"{where}.partition",
            )
        if item.partition in writes:
            raise InvalidRequest("partitions must be unique", field=f"{where}.partition")
        writes[item.partition] = PartitionWrite(
            item.partition, _text(item.state), _text(item.result)
        )
    return ProjectionRestoreOp(
        store=store,
        name=request.name,
        query=request.query,
        emit_enabled=request.emit_enabled,
        enabled=request.enabled,
        # Emitted ids derive from (name, epoch, position), and the target's positions are
        # not the source's: a new epoch keeps new emits from taking ids the source used.
        epoch=request.epoch + 1,
        checkpoint=request.checkpoint,
        processed=request.events_processed,
        emitted=request.events_emitted,
        partitions=list(writes.values()),
        reason=request.reason,
        fault_position=request.fault_position if request.reason else 0,
    )


def _text(value: object) -> bytes:
    return b"" if value is None else _json.encode(value)
