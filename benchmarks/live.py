"""Live latency: how long after its append request an event arrives on its live subject.

First the maximum append rate is measured briefly with the closed-loop append phase (or taken
from `--rate`). Then appends are sent open-loop at a share of it (`LIVE_LOAD`): one event per
append, each on a fixed timetable slot (`start + i / rate`), every append in its own task, so
a slow reply never delays the next send and the offered rate stays what was asked. A separate
nats-py connection subscribes to `esdb.events.<store>.>` and notes when each position's
message arrives; the append reply says which position each event got. Per event:

- request sent -> live message (the figure the target is about);
- reply received -> live message (negative when the emitter published before the gateway's
  reply reached the client);
- request sent -> reply, and timetable slot -> live message (which includes any delay of the
  bench's own event loop in sending).

Every acknowledged event must arrive on the live subject (`missing` must be 0); repeats are
counted as duplicates.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from esdb.benchmarks.appends import (
    EVENT_TYPE,
    MSGPACK_HEADERS,
    AppendBody,
    AppendPlan,
    AppendReply,
    AppendRun,
    BenchEvent,
    Progress,
    esdb_appends,
    report_progress,
)
from esdb.benchmarks.figures import (
    LIVE_LOAD,
    LIVE_TARGET_P99_MS,
    AppendFigures,
    BenchReport,
    LiveReport,
    latency_figures,
    percentile,
)
from esdb.benchmarks.rounds import WithProgress
from esdb.benchmarks.stack import BenchStack
from esdb.contracts.subjects import Op, api_subject
from esdb.contracts.topics import POSITION_HEADER, all_events_subject, event_subject

SENT_TO_LIVE = "append sent -> live message"
REPLY_TO_LIVE = "append reply -> live message"
SENT_TO_REPLY = "append sent -> reply"
SLOT_TO_LIVE = "timetable slot -> live message"

_PROGRESS_EVERY_S = 5.0
_GRACE_S = 5.0
"""How long to wait, after the last reply, for live messages still on their way."""
_START_DELAY_S = 0.05

_encode = msgspec.msgpack.Encoder().encode
_append_reply = msgspec.msgpack.Decoder(AppendReply).decode


@dataclass(frozen=True)
class LivePlan:
    """What the live scenario does."""

    run_id: str
    store: str
    rate: float | None
    """events/s to offer; None: `LIVE_LOAD` of what the closed-loop probe reaches."""
    events: int | None
    """Appends in the open-loop phase; None: `seconds` worth at the offered rate."""
    seconds: float
    probe_events: int
    clients: int
    """Clients of the closed-loop probe."""
    stream_length: int
    timeout: float


async def run_live(
    nc: NatsClient,
    stack: BenchStack,
    plan: LivePlan,
    payload: bytes,
    report: BenchReport,
    say: Callable[[str], None],
    with_progress: WithProgress,
) -> None:
    """Probe the maximum append rate (unless given), then the open-loop phase with the
    subscriber, into `report.live`; a resource sample after each."""
    probe: AppendFigures | None = None
    max_rate: float | None = None
    stored = 0
    if plan.rate is None:
        probe_run, stored = await _probe(nc, plan, payload, say, with_progress)
        report.resources.append(stack.sample("probe", stored, stored))
        probe = probe_run.log.figures("esdb append (closed loop)", probe_run.seconds)
        max_rate = probe.events_per_s
        rate = max_rate * LIVE_LOAD
        say(
            f"live: max append rate {max_rate:,.0f} events/s; offering {rate:,.0f} events/s "
            f"({LIVE_LOAD:.0%})"
        )
    else:
        rate = plan.rate
    if rate <= 0:
        raise LiveError("the offered rate is 0 events/s (did every probe append fail?)")
    events = plan.events if plan.events is not None else max(1, round(rate * plan.seconds))
    live = await _open_loop(nc, stack, plan, rate, events, payload, say)
    report.resources.append(stack.sample("live", live.appended, stored + live.appended))
    live.rate_from = "probe" if plan.rate is None else "--rate"
    live.max_rate = max_rate
    live.probe = probe
    report.live = live


class LiveError(RuntimeError):
    """The live scenario could not run."""


async def _probe(
    nc: NatsClient,
    plan: LivePlan,
    payload: bytes,
    say: Callable[[str], None],
    with_progress: WithProgress,
) -> tuple[AppendRun, int]:
    """The closed-loop append phase (after one warm-up append per client), and how many
    events the warm-up and the phase stored."""

    def append_plan(label: str, events: int) -> AppendPlan:
        return AppendPlan.for_phase(plan, label, events)

    say(
        f"live: max append rate probe, {plan.probe_events:,} appends from {plan.clients} clients..."
    )
    warm = await esdb_appends(
        nc, plan.store, append_plan("pw", plan.clients), payload, Progress("", 0)
    )
    progress = Progress("esdb append", plan.probe_events)
    run = await with_progress(
        progress,
        esdb_appends(nc, plan.store, append_plan("probe", plan.probe_events), payload, progress),
    )
    return run, warm.log.events + run.log.events


class _Arrivals:
    """What the subscriber saw: first arrival time and subject per position, and repeats."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.subject: dict[int, str] = {}
        self.repeats: Counter[int] = Counter()
        self.unpositioned = 0
        self.slow_consumer = 0

    async def on_message(self, msg: Msg) -> None:
        now = time.perf_counter()
        text = (msg.headers or {}).get(POSITION_HEADER)
        if text is None:
            self.unpositioned += 1
            return
        position = int(text)
        if position in self.at:
            self.repeats[position] += 1
        else:
            self.at[position] = now
            self.subject[position] = msg.subject

    async def on_error(self, error: Exception) -> None:
        if isinstance(error, nats.errors.SlowConsumerError):
            self.slow_consumer += 1


async def _open_loop(
    nc: NatsClient,
    stack: BenchStack,
    plan: LivePlan,
    rate: float,
    events: int,
    payload: bytes,
    say: Callable[[str], None],
) -> LiveReport:
    arrivals = _Arrivals()
    subject = all_events_subject(plan.store)
    sub_nc = await nats.connect(
        stack.urls,
        name="esdb-bench-live-subscriber",
        max_reconnect_attempts=3,
        error_cb=arrivals.on_error,
    )
    try:
        await sub_nc.subscribe(subject, cb=arrivals.on_message)
        await sub_nc.flush()
        # In a cluster, interest reaches the emitter's server over the routes a moment later.
        await asyncio.sleep(0.2 if len(stack.urls) > 1 else 0.0)
        say(
            f"live: {events:,} appends at {rate:,.0f} events/s ({events / rate:.1f} s), "
            f"subscribed to {subject} on a connection of its own..."
        )
        sender = _Sender(nc, plan, rate, events, payload)
        ticker = asyncio.create_task(report_progress(sender.progress, _PROGRESS_EVERY_S, say))
        try:
            await sender.run()
        finally:
            ticker.cancel()
        await _wait_arrivals(sender, arrivals)
    finally:
        await sub_nc.close()
    return _report(plan, rate, events, subject, sender, arrivals)


class _Sender:
    """Open-loop appends: append `i` is sent at `start + i / rate`, each in its own task."""

    def __init__(
        self, nc: NatsClient, plan: LivePlan, rate: float, events: int, payload: bytes
    ) -> None:
        self.nc = nc
        self.plan = plan
        self.rate = rate
        self.events = events
        self.payload = payload
        self.start = 0.0
        self.sent = array("d", bytes(8 * events))
        self.replied = array("d", bytes(8 * events))
        self.positions = array("q", bytes(8 * events))
        """The global position of append i; 0 while unknown or after a failure."""
        self.errors: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.progress = Progress("live append", events)
        self._subject = api_subject(plan.store, Op.APPEND)

    def stream(self, i: int) -> str:
        return f"live-{self.plan.run_id}_{i // self.plan.stream_length}"

    def slot(self, i: int) -> float:
        return self.start + i / self.rate

    async def run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        self.start = time.perf_counter() + _START_DELAY_S
        i = 0
        while i < self.events:
            now = time.perf_counter()
            due = self.slot(i)
            if due > now:
                await asyncio.sleep(due - now)
                continue
            # Every slot that has come (several when the loop woke late): send them all now.
            while i < self.events and self.slot(i) <= now:
                task = asyncio.create_task(self._append(i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
        while tasks:
            await asyncio.gather(*list(tasks))

    async def _append(self, i: int) -> None:
        body = _encode(
            AppendBody(
                stream=self.stream(i),
                expected_version="any",
                events=[BenchEvent(type=EVENT_TYPE, data=self.payload)],
            )
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.sent[i] = time.perf_counter()
        try:
            reply = await self.nc.request(
                self._subject, body, timeout=self.plan.timeout, headers=MSGPACK_HEADERS
            )
        except nats.errors.TimeoutError:
            self.errors["nats_timeout"] += 1
            return
        except nats.errors.NoRespondersError:
            self.errors["no_responders"] += 1
            return
        finally:
            self.in_flight -= 1
        self.replied[i] = time.perf_counter()
        result = _append_reply(reply.data)
        if result.error is not None:
            self.errors[result.error.code] += 1
            return
        self.positions[i] = result.first_position
        self.progress.done += 1


async def _wait_arrivals(sender: _Sender, arrivals: _Arrivals) -> None:
    """Until every acknowledged position was seen live, or `_GRACE_S` passed."""
    waiting = [p for p in sender.positions if p]
    deadline = time.perf_counter() + _GRACE_S
    while time.perf_counter() < deadline:
        waiting = [p for p in waiting if p not in arrivals.at]
        if not waiting:
            break
        await asyncio.sleep(0.01)
    # Repeats, if any, come right behind.
    await asyncio.sleep(0.1)


def _report(
    plan: LivePlan,
    rate: float,
    events: int,
    subject: str,
    sender: _Sender,
    arrivals: _Arrivals,
) -> LiveReport:
    sent_to_live: list[float] = []
    reply_to_live: list[float] = []
    sent_to_reply: list[float] = []
    slot_to_live: list[float] = []
    lags: list[float] = []
    ours: set[int] = set()
    missing = wrong_subject = 0
    for i in range(events):
        sent = sender.sent[i]
        if sent:
            lags.append(sent - sender.slot(i))
        position = sender.positions[i]
        if not position:
            continue
        ours.add(position)
        replied = sender.replied[i]
        sent_to_reply.append(replied - sent)
        arrived = arrivals.at.get(position)
        if arrived is None:
            missing += 1
            continue
        if arrivals.subject[position] != event_subject(plan.store, sender.stream(i), EVENT_TYPE):
            wrong_subject += 1
        sent_to_live.append(arrived - sent)
        reply_to_live.append(arrived - replied)
        slot_to_live.append(arrived - sender.slot(i))
    sends = [s for s in sender.sent if s]
    send_seconds = max(sends) - min(sends) if len(sends) > 1 else 0.0
    lags.sort()
    latencies = [
        latency_figures(SENT_TO_LIVE, sent_to_live),
        latency_figures(REPLY_TO_LIVE, reply_to_live),
        latency_figures(SENT_TO_REPLY, sent_to_reply),
        latency_figures(SLOT_TO_LIVE, slot_to_live),
    ]
    return LiveReport(
        subject=subject,
        rate_from="",
        max_rate=None,
        probe=None,
        offered_rate=round(rate, 1),
        planned=events,
        sent_rate=round((len(sends) - 1) / send_seconds, 1) if send_seconds > 0 else 0.0,
        send_seconds=round(send_seconds, 3),
        appended=len(ours),
        errors=sum(sender.errors.values()),
        error_codes=dict(sender.errors),
        received=sum(1 for p in ours if p in arrivals.at),
        missing=missing,
        duplicates=sum(n for p, n in arrivals.repeats.items() if p in ours),
        wrong_subject=wrong_subject,
        foreign=sum(1 for p in arrivals.at if p not in ours) + arrivals.unpositioned,
        slow_consumer=arrivals.slow_consumer,
        max_in_flight=sender.max_in_flight,
        schedule_lag_p99_ms=round(percentile(lags, 99) * 1000, 3),
        schedule_lag_max_ms=round(lags[-1] * 1000, 3) if lags else 0.0,
        latencies=latencies,
        target_p99_ms=LIVE_TARGET_P99_MS,
        met=bool(sent_to_live) and not missing and latencies[0].p99_ms <= LIVE_TARGET_P99_MS,
    )
