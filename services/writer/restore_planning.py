"""Leader-side planning of an admin's restore write (`_sys.store_restore`): checked against the
applied state plus the batch's overlay, stamped as `RestoreStreamOp`s and `SnapshotOp`s.

Kept apart from `planning.py` so `append` keeps its rules: only a restore may start a stream
above version 0, skip versions, keep events' `created`, or set a stream's version."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from esdb.contracts.api import AppendResult
from esdb.contracts.commands import RestoredStream, StoreRestore, WriteOutcome, WriteRequest
from esdb.contracts.errors import (
    EsdbError,
    IdempotencyConflict,
    StreamDeleted,
    WrongExpectedVersion,
)
from esdb.contracts.log import LogOp, RestoreStreamOp
from esdb.contracts.restore import NO_FENCE
from esdb.shared.restore_shape import check_restore_shape
from esdb.shared.storage.records import STREAM_ACTIVE, STREAM_TOMBSTONED, StreamState

if TYPE_CHECKING:
    from esdb.services.writer.planning import Planner


def plan_restore(
    planner: Planner, store: str, restore: StoreRestore
) -> tuple[list[LogOp], WriteOutcome]:
    """The ops and outcome of one restore write; nothing is planned when it fails."""
    try:
        check_restore_shape(restore)
        replayed = _replayed(planner, store, restore.streams)
        if replayed is not None:
            return [], WriteOutcome(results=replayed)
        overlay = planner.overlay(store)
        fence = restore.expected_position
        if fence != NO_FENCE and fence != overlay.last_position:
            raise WrongExpectedVersion(
                f"store {store!r} is at position {overlay.last_position}, expected {fence}",
                field="expected_position",
                actual_position=overlay.last_position,
                expected_position=fence,
            )
        ops: list[LogOp] = []
        results: list[AppendResult] = []
        planned: dict[str, StreamState] = {}  # this request's streams so far
        restored: list[RestoreStreamOp] = []
        position = overlay.last_position + 1
        for index, item in enumerate(restore.streams):
            state = planned.get(item.stream) or planner.stream_state(store, item.stream)
            unchanged = None if item.events else _as_asked(state, item)
            if unchanged is not None:
                results.append(unchanged)  # a re-run: nothing to do
                continue
            op = _stream_op(state, store, item, position, f"streams[{index}]")
            planned[item.stream] = StreamState(op.version, op.state, op.metadata)
            restored.append(op)
            ops.append(op)
            count = len(op.events)
            last_version = op.first_version + count - 1 if count else op.version
            results.append(
                AppendResult(
                    first_version=op.first_version if count else op.version,
                    last_version=last_version,
                    first_position=position if count else 0,
                    last_position=position + count - 1 if count else 0,
                )
            )
            position += count
    except EsdbError as error:
        return [], WriteOutcome(error=error.to_body())
    for stream, state in planned.items():
        overlay.states[stream] = state
        overlay.versions[stream] = state.version
    for op in restored:
        for offset, event in enumerate(op.events):
            overlay.event_ids[event.event_id] = (
                op.stream,
                op.first_version + offset,
                op.first_position + offset,
            )
    overlay.last_position = position - 1
    ops += [msgspec.structs.replace(s, store=store) for s in restore.snapshots]
    return ops, WriteOutcome(results=results)


def restore_events(request: WriteRequest) -> int:
    """How many events a write restores (0 for any other write)."""
    restore = request.restore
    return 0 if restore is None else sum(len(s.events) for s in restore.streams)


def restore_bytes(restore: StoreRestore) -> int:
    """About how many bytes a restore adds to a log entry (as the sequencer counts appends)."""
    events = sum(
        len(e.data)
        + len(e.metadata)
        + len(e.type)
        + len(e.content_type)
        + 48
        + sum(len(t) for t in e.tags)
        for s in restore.streams
        for e in s.events
    )
    snapshots = sum(len(s.data) + len(s.metadata) + 256 for s in restore.snapshots)
    return events + snapshots + 128 * len(restore.streams)


def _stream_op(
    state: StreamState, store: str, item: RestoredStream, position: int, where: str
) -> RestoreStreamOp:
    if state.state == STREAM_TOMBSTONED:
        raise StreamDeleted(f"stream {item.stream!r} is tombstoned", stream=item.stream)
    absent = state.version == -1 and state.state == STREAM_ACTIVE
    if state.version != item.expected_version or (item.expected_version == -1 and not absent):
        raise WrongExpectedVersion(
            f"stream {item.stream!r} is at version {state.version}, expected "
            f"{item.expected_version}",
            field=f"{where}.expected_version",
            stream=item.stream,
            actual_version=state.version,
            expected_version=item.expected_version,
        )
    last = item.first_version + len(item.events) - 1 if item.events else state.version
    return RestoreStreamOp(
        store=store,
        stream=item.stream,
        first_version=item.first_version if item.events else last,
        first_position=position if item.events else 0,
        events=item.events,
        version=last if item.version is None else item.version,
        state=state.state if item.state is None else item.state,
        metadata=state.metadata if item.metadata is None else item.metadata,
    )


def _replayed(
    planner: Planner, store: str, streams: list[RestoredStream]
) -> list[AppendResult] | None:
    """The original results if every event of the request is already stored in place (and
    each stream without events already as asked); None when none is stored (or the request
    has no events); `IdempotencyConflict` when only some are."""
    located = [_located(planner, store, item) for item in streams if item.events]
    if not located or all(found is None for found in located):
        return None
    if any(found is None for found in located):
        stored = sum(found is not None for found in located)
        raise IdempotencyConflict(
            f"{stored} of {len(located)} streams of the restore are already stored",
            stored=stored,
        )
    results: list[AppendResult] = []
    events = iter(located)
    for item in streams:
        state = planner.stream_state(store, item.stream)
        result = next(events) if item.events else _as_asked(state, item)
        if result is None:
            raise IdempotencyConflict(
                f"the restore is already stored but stream {item.stream!r} has changed since",
                stream=item.stream,
            )
        results.append(result)
    return results


def _as_asked(state: StreamState, item: RestoredStream) -> AppendResult | None:
    """The result of a stream restored without events, if the stream (in `state`) is
    already as asked."""
    wanted = StreamState(
        state.version if item.version is None else item.version,
        state.state if item.state is None else item.state,
        state.metadata if item.metadata is None else item.metadata,
    )
    if wanted != state:
        return None
    return AppendResult(
        first_version=state.version, last_version=state.version, first_position=0, last_position=0
    )


def _located(planner: Planner, store: str, item: RestoredStream) -> AppendResult | None:
    """Where the item's events are stored: None if none is; `IdempotencyConflict` if only
    some are, or elsewhere."""
    where = [planner.locate(store, e.event_id) for e in item.events]
    found = [w for w in where if w is not None]
    if not found:
        return None
    expected = [(item.stream, item.first_version + i) for i in range(len(where))]
    if len(found) < len(where) or [(s, v) for s, v, _ in found] != expected:
        raise IdempotencyConflict(
            f"events of stream {item.stream!r} are already stored, not all or elsewhere",
            stream=item.stream,
        )
    return AppendResult(
        first_version=found[0][1],
        last_version=found[-1][1],
        first_position=found[0][2],
        last_position=found[-1][2],
    )
