"""The leader's sequencer: batches every waiting write into one fenced log entry."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
from opentelemetry.trace import Span, SpanContext, StatusCode, Tracer

from esdb.contracts.commands import WriteOutcome, WriteRequest
from esdb.contracts.errors import Timeout, Unavailable
from esdb.contracts.log import LogEntry, LogOp, encode_entry
from esdb.services.writer.applier import Applier
from esdb.services.writer.log import FencedOut, ReplicatedLog
from esdb.services.writer.planning import Planner
from esdb.services.writer.restore_planning import restore_bytes, restore_events
from esdb.shared.metrics import WriterMetrics
from esdb.shared.tracing import batch_span, child_span

log = logging.getLogger(__name__)


# Keeps a log entry well under the log stream's maximum message size (MAX_ENTRY_BYTES); a
# single request may exceed it up to the gateway's request limit.
DEFAULT_MAX_BATCH_BYTES = 2 << 20


@dataclass(frozen=True)
class OpsRequest:
    """Ops to log as they are (checkpoints), in the next entry."""

    ops: list[LogOp]


Command = WriteRequest | OpsRequest
Answer = Callable[[WriteOutcome], None]
"""Called once with a command's outcome."""
_Queued = tuple[Command, Answer, SpanContext | None]
"""A command, what to call with its outcome, and the span it was sent from (None: untraced)."""


def approximate_bytes(request: Command) -> int:
    """About how many bytes `request` adds to a log entry."""
    if isinstance(request, OpsRequest):
        return len(_op_encoder.encode(request.ops))  # snapshots make some ops large
    if request.restore is not None:
        return restore_bytes(request.restore)
    return sum(
        len(e.data) + len(e.metadata) + len(e.type) + len(e.content_type) + 40
        for a in request.appends
        for e in a.events
    )


_op_encoder = msgspec.msgpack.Encoder()


class LeadershipLost(Exception):
    """The sequencer cannot go on: fenced out, or the log state is unknown after an error."""


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class _InFlight:
    """A planned batch whose entry (if any) is on its way to the log."""

    batch: list[_Queued]
    outcomes: list[WriteOutcome]
    entry: LogEntry | None = None
    raw: bytes = b""
    sequence: int = 0
    entry_id: str = ""
    previous_id: str | None = None
    publish: asyncio.Task[int] | None = None
    """The append under way, when pipelined; one at a time, the completer awaits it itself."""
    events: int = 0
    planned_at: float = 0.0
    span: Span | None = None

    def end_span(self, error: str | None = None) -> None:
        """End the batch's span, if traced, marking it failed when `error` says why."""
        if self.span is not None:
            if error is not None:
                self.span.set_status(StatusCode.ERROR, error)
            self.span.end()
            self.span = None


class Sequencer:
    """Takes writes while this node leads: one log entry per batch, up to `max_in_flight`
    entries pipelined (each fenced on its predecessor's sequence), applied and answered in
    log order."""

    def __init__(
        self,
        log: ReplicatedLog,
        applier: Applier,
        *,
        node_id: str,
        max_batch_events: int,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        max_in_flight: int = 3,
        clock: Callable[[], int] = _now_us,
        tracer: Tracer | None = None,
        metrics: WriterMetrics | None = None,
        answered: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._log = log
        self._applier = applier
        self._node_id = node_id
        self._max_batch_events = max_batch_events
        self._max_batch_bytes = max_batch_bytes
        self._clock = clock
        self._tracer = tracer
        self._metrics = metrics
        self._answered = answered
        self._queue: list[_Queued] = []
        self._closed = False
        self._running = False
        self._stopped = False
        self._ended = False
        self._kick_scheduled = False
        self._planner = Planner(applier.catalog)
        self._free = max_in_flight
        self._pipelined = max_in_flight > 1
        self._in_flight: asyncio.Queue[_InFlight | None] = asyncio.Queue()
        self._unapplied = 0
        self._next_sequence = 0
        # Names this leadership's entries in the log (Nats-Msg-Id), so a pipelined entry can
        # require its own predecessor, not just a predecessor's sequence number.
        self._term = uuid.uuid4().hex[:16]
        self._last_id: tuple[int, str] | None = None

    def submit(
        self, request: Command, trace: SpanContext | None = None
    ) -> asyncio.Future[WriteOutcome]:
        """Queue a write; the future resolves after its entry is durable and applied. `trace`
        is the span the write came from: its batch's span links to it."""
        future: asyncio.Future[WriteOutcome] = asyncio.get_running_loop().create_future()
        self.submit_with(request, partial(_resolve, future), trace)
        return future

    def submit_with(
        self, request: Command, answer: Answer, trace: SpanContext | None = None
    ) -> None:
        """Queue a write; `answer` is called with its outcome once its entry is durable and
        applied, in log order, then the `answered` hook is awaited for the batch."""
        if self._closed:
            answer(WriteOutcome(error=Unavailable("this writer is not the leader").to_body()))
            return
        self._queue.append((request, answer, trace))
        if not self._kick_scheduled:
            # Once per burst, after the callbacks already due: the writes that came in
            # together go out in one entry.
            self._kick_scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)

    async def run(self) -> None:
        """Commit batches until closed; raises `LeadershipLost` when it must step down."""
        self._next_sequence = self._applier.catalog.applied_sequence() + 1
        self._running = True
        try:
            self._kick()
            await self._complete_in_order()  # returns once closed and everything is answered
        finally:
            self._closed = self._stopped = True
            stranded = [item for item in self._drain_in_flight() if item is not None]
            unknown = WriteOutcome(error=Timeout("the leader stepped down").to_body())
            for item in stranded:
                if item.publish is not None:
                    item.publish.cancel()
                for _, answer, _ in item.batch:
                    answer(unknown)
                item.end_span("the leader stepped down")
            self._fail_pending(Unavailable("the leader stepped down; retry"))

    def _kick(self) -> None:
        """Start a batch for everything queued while the window has room; once closed and
        drained, tell the completer that nothing more comes."""
        self._kick_scheduled = False
        if not self._running or self._stopped:
            return
        while self._queue and self._free > 0:
            self._free -= 1
            self._start(self._take_batch())
        if self._closed and not self._queue and not self._ended:
            self._ended = True
            self._in_flight.put_nowait(None)

    def close(self) -> None:
        """Stop taking writes; `run` finishes the batches already queued, then returns."""
        self._closed = True
        self._kick()

    def _take_batch(self) -> list[_Queued]:
        taken = events = size = 0
        for request, _, _ in self._queue:
            count = (
                0
                if isinstance(request, OpsRequest)
                else sum(len(a.events) for a in request.appends) + restore_events(request)
            )
            nbytes = approximate_bytes(request)
            over = events + count > self._max_batch_events or size + nbytes > self._max_batch_bytes
            if taken and over:
                break
            taken += 1
            events += count
            size += nbytes
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    def _start(self, batch: list[_Queued]) -> None:
        """Plan a batch and send its entry on, fenced on the entry before it."""
        planned_at = time.perf_counter()
        writes = [r for r, _, _ in batch if isinstance(r, WriteRequest)]
        plan = self._planner.plan_batch(writes, now_us=self._clock())
        planned = iter(plan.outcomes)
        logged = WriteOutcome(results=[])
        outcomes = [next(planned) if isinstance(r, WriteRequest) else logged for r, _, _ in batch]
        ops = plan.ops + [op for r, _, _ in batch if isinstance(r, OpsRequest) for op in r.ops]
        item = _InFlight(batch, outcomes, planned_at=planned_at)
        item.events = sum(
            len(a.events)
            for (r, _, _), outcome in zip(batch, outcomes, strict=True)
            if isinstance(r, WriteRequest) and outcome.error is None
            for a in r.appends
        )
        if self._tracer is not None and any(trace is not None for _, _, trace in batch):
            item.span = batch_span(
                self._tracer,
                "writer sequence",
                (trace for _, _, trace in batch if trace is not None),
                attributes={"esdb.requests": len(batch), "esdb.events": item.events},
            )
        if ops:
            item.entry = LogEntry(ops=ops, leader=self._node_id)
            item.raw = encode_entry(item.entry)
            item.sequence = self._next_sequence
            item.entry_id = f"{self._term}.{item.sequence}"
            last = self._last_id
            if self._pipelined and last is not None and last[0] == item.sequence - 1:
                item.previous_id = last[1]
            self._last_id = (item.sequence, item.entry_id)
            self._next_sequence += 1
            self._unapplied += 1
            if self._pipelined:
                item.publish = asyncio.create_task(self._publish(item))
        self._in_flight.put_nowait(item)

    async def _publish(self, item: _InFlight) -> int:
        """Append the batch's entry to the log, fenced on the entry before it: its sequence,
        and when that entry is this leader's own (pipelined), its id too. The sequence alone
        is not enough: if another leader's entry took the predecessor's place, the
        predecessor was fenced out, yet this entry, planned on top of it, would fit."""
        if item.span is None or self._tracer is None:
            return await self._append(item)
        span = child_span(
            self._tracer,
            "writer log_publish",
            item.span,
            attributes={"esdb.sequence": item.sequence, "esdb.bytes": len(item.raw)},
        )
        try:
            return await self._append(item)
        except BaseException as e:
            span.set_status(StatusCode.ERROR, type(e).__name__)
            raise
        finally:
            span.end()

    def _append(self, item: _InFlight) -> Coroutine[Any, Any, int]:
        return self._log.append(
            item.raw,
            expected_last=item.sequence - 1,
            entry_id=item.entry_id,
            expected_last_id=item.previous_id,
        )

    async def _complete_in_order(self) -> None:
        """Apply each entry once the log has it, then answer its batch, in log order."""
        while (item := await self._in_flight.get()) is not None:
            try:
                if item.entry is not None:
                    await self._apply_when_durable(item)
            except BaseException as e:
                # Fenced out, outcome unknown, or apply failed: nothing later can be trusted.
                error = WriteOutcome(error=Timeout(f"the leader stepped down: {e}").to_body())
                self._abandon(item, error)
                raise
            for (_, answer, _), outcome in zip(item.batch, item.outcomes, strict=True):
                answer(outcome)
            item.end_span()
            if self._answered is not None:
                await self._answered()
            if item.entry is not None:
                await self._applier.notify()
            self._free += 1
            self._kick()

    async def _apply_when_durable(self, item: _InFlight) -> None:
        assert item.entry is not None
        try:
            sequence = await (item.publish or self._publish(item))
        except FencedOut as e:
            raise LeadershipLost(f"fenced out at {item.sequence - 1}: another leader") from e
        except Exception as e:
            # The entry may or may not be in the log; only the tail can tell, so step down.
            raise LeadershipLost(f"log append failed ({e!r}); outcome unknown") from e
        if sequence != item.sequence:
            raise LeadershipLost(f"the log gave sequence {sequence}, not {item.sequence}")
        applying = None
        if item.span is not None and self._tracer is not None:
            applying = child_span(
                self._tracer, "writer apply", item.span, attributes={"esdb.sequence": sequence}
            )
        async with self._applier.lock:
            try:
                self._applier.apply_locked(sequence, item.entry, item.raw)
            except Unavailable as e:
                # Logged but not applied: the tail retries it until the store takes it.
                raise LeadershipLost(f"cannot apply entry {sequence}: {e}") from e
            finally:
                if applying is not None:
                    applying.end()
        if self._metrics is not None:
            self._metrics.committed(
                len(item.batch), item.events, time.perf_counter() - item.planned_at
            )
        self._unapplied -= 1
        if self._unapplied == 0:
            self._planner.reset()  # what was planned is now the applied state

    def _drain_in_flight(self) -> list[_InFlight | None]:
        items: list[_InFlight | None] = []
        while not self._in_flight.empty():
            items.append(self._in_flight.get_nowait())
        return items

    def _abandon(self, failed: _InFlight, error: WriteOutcome) -> None:
        items = [failed, *(i for i in self._drain_in_flight() if i is not None)]
        for item in items:
            if item.publish is not None and item is not failed:
                item.publish.cancel()
            for _, answer, _ in item.batch:
                answer(error)
            item.end_span("the leader stepped down")

    async def append_locked(self, ops: list[LogOp]) -> int:
        """Append `ops` as one entry fenced on the applied sequence, then apply it locally.
        For use before `run` starts; the caller holds the applier lock."""
        catalog = self._applier.catalog
        entry = LogEntry(ops=ops, leader=self._node_id)
        expected = catalog.applied_sequence()
        raw = encode_entry(entry)
        try:
            sequence = await self._log.append(raw, expected_last=expected)
        except FencedOut as e:
            raise LeadershipLost(
                f"fenced out at sequence {expected}: another leader appended"
            ) from e
        except Exception as e:
            raise LeadershipLost(f"log append failed ({e!r}); outcome unknown") from e
        self._applier.apply_locked(sequence, entry, raw)
        return sequence

    def _fail_pending(self, error: Unavailable) -> None:
        pending, self._queue = self._queue, []
        for _, answer, _ in pending:
            answer(WriteOutcome(error=error.to_body()))


def _resolve(future: asyncio.Future[WriteOutcome], outcome: WriteOutcome) -> None:
    if not future.done():
        future.set_result(outcome)
