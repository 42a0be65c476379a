"""Leader-side validation and stamping: turn waiting writes into one log entry and replies.

Pure: reads the applied state through a `Catalog`, keeps the batch's own effects in an overlay,
and never touches it. Everything non-deterministic (timestamps) is stamped here."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from esdb.contracts.api import AppendResult
from esdb.contracts.commands import (
    EXPECT_ANY,
    EXPECT_NO_STREAM,
    EXPECT_STREAM_EXISTS,
    LIFECYCLE_DELETE,
    LIFECYCLE_METADATA,
    LIFECYCLE_TOMBSTONE,
    STORE_CONFIGURE,
    STORE_CREATE,
    STORE_REMOVE,
    StoreChange,
    StreamAppend,
    StreamLifecycle,
    WriteOutcome,
    WriteRequest,
)
from esdb.contracts.dcb import DCB_STREAM
from esdb.contracts.errors import (
    AlreadyExists,
    EsdbError,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    StreamDeleted,
    WrongExpectedVersion,
)
from esdb.contracts.log import (
    AppendOp,
    CreateStoreOp,
    LogOp,
    RemoveStoreOp,
    StampedEvent,
    StoreConfigOp,
    StreamMetaOp,
)
from esdb.services.writer.dcb_conditions import PlannedDcbEvent, check_condition, plan_dcb_events
from esdb.services.writer.projection_planning import plan_projection_commit
from esdb.services.writer.restore_planning import plan_restore
from esdb.shared.storage.catalog import Catalog
from esdb.shared.storage.port import StoreReader
from esdb.shared.storage.records import (
    STREAM_ACTIVE,
    STREAM_DELETED,
    STREAM_TOMBSTONED,
    StreamState,
)
from esdb.shared.storage.visibility import TRUNCATE_BEFORE


@dataclass
class _StoreOverlay:
    """What earlier writes of this batch did to one store."""

    last_position: int
    versions: dict[str, int] = field(default_factory=dict)
    states: dict[str, StreamState] = field(default_factory=dict)
    event_ids: dict[bytes, tuple[str, int, int]] = field(default_factory=dict)
    dcb_events: list[PlannedDcbEvent] = field(default_factory=list)
    projections: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """(epoch, revision, checkpoint) of projections committed by this batch's or in-flight
    entries."""


@dataclass
class Plan:
    """The ops of one log entry and one outcome per planned write."""

    ops: list[LogOp]
    outcomes: list[WriteOutcome]


class Planner:
    """Plans batches against the applied state plus the effects of entries planned since the
    last `reset` (entries still in flight to the log), so the leader can pipeline entries."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._now_us = 0
        self._overlays: dict[str, _StoreOverlay] = {}
        self._stores: dict[str, bool] = {}  # stores created (True) or removed (False)
        self._held: contextlib.ExitStack | None = None  # read transactions of `plan_batch`
        self._holding: set[str] = set()

    def reset(self) -> None:
        """Forget planned effects; call when everything planned has been applied."""
        self._overlays.clear()
        self._stores.clear()

    def plan_batch(self, requests: list[WriteRequest], *, now_us: int) -> Plan:
        """Validate and stamp `requests` in order; failed ones get an error and add no ops."""
        self._now_us = now_us
        ops: list[LogOp] = []
        outcomes: list[WriteOutcome] = []
        with contextlib.ExitStack() as self._held:
            for request in requests:
                try:
                    request_ops, outcome = self.plan(request)
                except EsdbError as error:
                    request_ops, outcome = [], WriteOutcome(error=error.to_body())
                ops.extend(request_ops)
                outcomes.append(outcome)
        self._held = None
        self._holding.clear()
        return Plan(ops=ops, outcomes=outcomes)

    def overlay(self, store: str) -> _StoreOverlay:
        found = self._overlays.get(store)
        if found is None:
            found = self._overlays[store] = _StoreOverlay(self.store(store).last_position())
        return found

    def store(self, store: str) -> StoreReader:
        """The applied state of `store`; `NotFound` when it does not exist. During
        `plan_batch` its lookups share one read transaction (one snapshot) per store."""
        reader = self._catalog.get(store)
        if self._held is not None and store not in self._holding:
            self._held.enter_context(reader.held_reads())
            self._holding.add(store)
        return reader

    def stream_state(self, store: str, stream: str) -> StreamState:
        overlay = self.overlay(store)
        state = overlay.states.get(stream)
        if state is None:
            # Kept for the rest of the batch: only this planner's own ops change it until
            # `reset`, and those go through the overlay.
            state = self.store(store).stream_state(stream) or StreamState()
            overlay.states[stream] = state
        if stream in overlay.versions:
            return StreamState(overlay.versions[stream], state.state, state.metadata)
        return state

    def locate(self, store: str, event_id: bytes) -> tuple[str, int, int] | None:
        """(stream, version, position) of a stored or batched event id."""
        overlay = self.overlay(store)
        if event_id in overlay.event_ids:
            return overlay.event_ids[event_id]
        reader = self.store(store)
        position = reader.event_position(event_id)
        if position is None:
            return None
        record = reader.get_event(position)
        if record is None:
            return None
        return record.stream, record.version, record.position

    def plan(self, request: WriteRequest) -> tuple[list[LogOp], WriteOutcome]:
        if request.store_change is not None:
            return self._plan_store_change(request.store, request.store_change)
        if self._stores.get(request.store) is False:
            gone = NotFound(f"store {request.store!r} is being removed", field="store")
            return [], WriteOutcome(error=gone.to_body())
        if request.lifecycle is not None:
            return self._plan_lifecycle(request.store, request.lifecycle)
        if request.projection is not None:
            return plan_projection_commit(self, request)
        if request.restore is not None:
            return plan_restore(self, request.store, request.restore)
        try:
            check_shape(request)
            overlay = self.overlay(request.store)
            replayed = None if request.fresh_ids else self._replayed(request)
            if replayed is not None:
                return [], WriteOutcome(results=replayed)
            if request.condition is not None:
                store = self.store(request.store)
                check_condition(store, overlay.dcb_events, request.condition)
            ops: list[AppendOp] = []
            results: list[AppendResult] = []
            position = overlay.last_position + 1
            for append in request.appends:
                version = self._check_expected(request.store, append)
                op = AppendOp(
                    store=request.store,
                    stream=append.stream,
                    first_version=version + 1,
                    first_position=position,
                    events=[
                        StampedEvent(
                            e.event_id,
                            e.type,
                            e.data,
                            e.metadata,
                            e.content_type,
                            self._now_us,
                            e.tags,
                        )
                        for e in append.events
                    ],
                )
                count = len(append.events)
                ops.append(op)
                results.append(
                    AppendResult(
                        first_version=version + 1,
                        last_version=version + count,
                        first_position=position,
                        last_position=position + count - 1,
                    )
                )
                position += count
        except EsdbError as error:
            return [], WriteOutcome(error=error.to_body())
        for op in ops:
            state = self.stream_state(request.store, op.stream)
            if state.state == STREAM_DELETED:
                overlay.states[op.stream] = StreamState(
                    state.version, STREAM_ACTIVE, state.metadata
                )
            overlay.versions[op.stream] = op.first_version + len(op.events) - 1
            if op.stream == DCB_STREAM:
                plan_dcb_events(overlay.dcb_events, op)
            for offset, event in enumerate(op.events):
                overlay.event_ids[event.event_id] = (
                    op.stream,
                    op.first_version + offset,
                    op.first_position + offset,
                )
        overlay.last_position = position - 1
        return list[LogOp](ops), WriteOutcome(results=results)

    def _check_expected(self, store: str, append: StreamAppend) -> int:
        return self._check_version(store, append.stream, append.expected_version).version

    def _check_version(self, store: str, stream: str, expected: int) -> StreamState:
        """The stream's state if it is where `expected` says; a soft-deleted stream counts
        as absent for `no_stream` and `stream_exists`, its version still numbers appends."""
        state = self.stream_state(store, stream)
        if state.state == STREAM_TOMBSTONED:
            raise StreamDeleted(f"stream {stream!r} is tombstoned", stream=stream)
        actual = state.version
        exists = actual >= 0 and state.state != STREAM_DELETED
        ok = (
            expected in (EXPECT_ANY, actual)
            or (expected == EXPECT_STREAM_EXISTS and exists)
            or (expected == EXPECT_NO_STREAM and not exists)
        )
        if not ok:
            raise WrongExpectedVersion(
                f"stream {stream!r} is at version {actual}, expected {_describe(expected)}",
                stream=stream,
                actual_version=actual,
                expected_version=_describe(expected),
            )
        return state

    def _plan_store_change(
        self, name: str, change: StoreChange
    ) -> tuple[list[LogOp], WriteOutcome]:
        """Create, remove or configure a store, against the stores planned so far."""
        exists = self._stores.get(name, self._catalog.exists(name))
        op: LogOp
        try:
            if change.action == STORE_CREATE:
                if exists:
                    raise AlreadyExists(f"store {name!r} already exists", field="store")
                self._stores[name] = True
                op = CreateStoreOp(name, change.config)
            elif not exists:
                raise NotFound(f"store {name!r} does not exist", field="store", store=name)
            elif change.action == STORE_REMOVE:
                self._stores[name] = False
                self._overlays.pop(name, None)
                op = RemoveStoreOp(name)
            elif change.action == STORE_CONFIGURE:
                op = StoreConfigOp(name, change.config)
            else:
                raise InvalidRequest(f"unknown store change {change.action!r}", field="action")
        except EsdbError as error:
            return [], WriteOutcome(error=error.to_body())
        return [op], WriteOutcome(results=[])

    def _plan_lifecycle(
        self, store: str, change: StreamLifecycle
    ) -> tuple[list[LogOp], WriteOutcome]:
        """`set_stream_metadata`, `delete_stream` or `tombstone_stream` as one op."""
        try:
            state = self._check_version(store, change.stream, change.expected_version)
        except EsdbError as error:
            return [], WriteOutcome(error=error.to_body())
        if change.action == LIFECYCLE_METADATA:
            new_state, metadata = state.state, dict(change.metadata)
        elif change.action == LIFECYCLE_DELETE:
            # Hide every event so far; the stream may be written again from the next version.
            new_state = STREAM_DELETED
            metadata = {**state.metadata, TRUNCATE_BEFORE: state.version + 1}
        elif change.action == LIFECYCLE_TOMBSTONE:
            new_state, metadata = STREAM_TOMBSTONED, state.metadata
        else:
            unknown = InvalidRequest(f"unknown stream change {change.action!r}", field="action")
            return [], WriteOutcome(error=unknown.to_body())
        self.overlay(store).states[change.stream] = StreamState(state.version, new_state, metadata)
        op = StreamMetaOp(store, change.stream, new_state, metadata)
        result = AppendResult(
            first_version=state.version,
            last_version=state.version,
            first_position=0,
            last_position=0,
        )
        return [op], WriteOutcome(results=[result])

    def _replayed(self, request: WriteRequest) -> list[AppendResult] | None:
        """The original results if every event of the request is already stored in place."""
        results: list[AppendResult] = []
        seen = missing = 0
        for append in request.appends:
            where = [self.locate(request.store, e.event_id) for e in append.events]
            found = [w for w in where if w is not None]
            seen += len(found)
            missing += len(where) - len(found)
            if len(found) == len(where):
                streams = {stream for stream, _, _ in found}
                versions = [v for _, v, _ in found]
                positions = [p for _, _, p in found]
                contiguous = versions == list(range(versions[0], versions[0] + len(versions)))
                if streams != {append.stream} or not contiguous:
                    raise IdempotencyConflict(
                        "event ids are already stored elsewhere", stream=append.stream
                    )
                results.append(
                    AppendResult(
                        first_version=versions[0],
                        last_version=versions[-1],
                        first_position=positions[0],
                        last_position=positions[-1],
                    )
                )
        if seen == 0:
            return None
        if missing:
            raise IdempotencyConflict(
                f"{seen} of {seen + missing} event ids are already stored", stored=seen
            )
        return results


def check_shape(request: WriteRequest) -> None:
    """Reject what apply could not take: the writer never trusts its inbox, since a bad
    entry in the log would stop every node."""
    if not request.appends:
        raise InvalidRequest("a write needs at least one append", field="appends")
    if len(request.appends) == 1 and len(events := request.appends[0].events) == 1:
        if len(events[0].event_id) != 16:  # the common case, one event: nothing to compare
            raise InvalidRequest("event ids must be unique 16-byte UUIDs", field="events")
        return
    streams = [a.stream for a in request.appends]
    if len(set(streams)) != len(streams):
        raise InvalidRequest("each stream may appear once in a write", field="appends")
    if any(not a.events for a in request.appends):
        raise InvalidRequest("events must not be empty", field="events")
    ids = [e.event_id for a in request.appends for e in a.events]
    if len(set(ids)) != len(ids) or any(len(i) != 16 for i in ids):
        raise InvalidRequest("event ids must be unique 16-byte UUIDs", field="events")


def _describe(expected: int) -> str | int:
    return {
        EXPECT_ANY: "any",
        EXPECT_NO_STREAM: "no_stream",
        EXPECT_STREAM_EXISTS: "stream_exists",
    }.get(expected, expected)


def plan_batch(requests: list[WriteRequest], catalog: Catalog, *, now_us: int) -> Plan:
    """Plan one batch against the applied state alone."""
    return Planner(catalog).plan_batch(requests, now_us=now_us)
