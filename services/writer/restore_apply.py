"""Deterministic apply of `RestoreStreamOp` (an admin's restore write), beside `apply.py`."""

from __future__ import annotations

from esdb.contracts.log import RestoreStreamOp
from esdb.shared.storage.port import StoreTransaction
from esdb.shared.storage.records import EventRecord, StreamState


def restore_problem(op: RestoreStreamOp, state: StreamState, next_position: int) -> str | None:
    """Why the op does not fit a stream in `state` with `next_position` free (the writer
    must then stop, as for any entry that does not fit); None when it fits."""
    last = op.first_version + len(op.events) - 1
    if op.events and (op.first_version <= state.version or op.first_position != next_position):
        return (
            f"restore of {op.stream!r} at version {op.first_version}/position "
            f"{op.first_position} does not follow {state.version}/{next_position - 1}"
        )
    if op.version < max(state.version, last):
        return f"restore of {op.stream!r} leaves it at version {op.version}, below {state.version}"
    return None


def apply_restore(
    txn: StoreTransaction, op: RestoreStreamOp, next_position: int
) -> tuple[StreamState, int]:
    """Store the op's events (it fits: `restore_problem`), then give the stream the op's
    version, state and metadata; returns that state and the next free position."""
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
            )
        )
    return StreamState(op.version, op.state, op.metadata), next_position + len(op.events)
