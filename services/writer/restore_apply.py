"""Deterministic apply of `RestoreStreamOp` (an admin's restore write), beside `apply.py`."""

from __future__ import annotations

from esdb.contracts.log import AppendOp, RestoreStreamOp
from esdb.shared.storage.records import StreamState


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


def restored_append(op: RestoreStreamOp) -> AppendOp:
    """The op's events as the append `apply` stores (after `restore_problem` found it fits)."""
    return AppendOp(op.store, op.stream, op.first_version, op.first_position, op.events)


def restored_state(op: RestoreStreamOp) -> StreamState:
    """The stream's state once the op is applied."""
    return StreamState(op.version, op.state, op.metadata)
