"""Live latency: how long after its append request an event arrives on its live subject.

First the maximum append rate is measured briefly with the closed-loop append phase (or taken
from `--rate`). Then appends are sent open-loop at a share of it (`LIVE_LOAD`, see
`open_loop`). A separate nats-py connection subscribes to `esdb.events.<store>.>` and notes
when each position's message arrives; the append reply says which position each event got.
Per event:

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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from esdb.benchmarks.appends import EVENT_TYPE, report_progress
from esdb.benchmarks.figures import LIVE_TARGET_P99_MS, BenchReport, LiveReport
from esdb.benchmarks.open_loop import (
    OfferedRate,
    OpenLoop,
    arrival_latencies,
    esdb_sender,
    offered_rate,
    wait_arrivals,
)
from esdb.benchmarks.rounds import WithProgress
from esdb.benchmarks.stack import BenchStack
from esdb.contracts.topics import POSITION_HEADER, all_events_subject, event_subject

_PROGRESS_EVERY_S = 5.0
_GRACE_S = 5.0
"""After the last reply, stop waiting for live messages once none came for this long."""


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

    def stream(self, i: int) -> str:
        """The stream of open-loop append `i`."""
        return f"live-{self.run_id}_{i // self.stream_length}"


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
    offered = await offered_rate(nc, stack, plan, payload, report, say, with_progress)
    events = plan.events if plan.events is not None else max(1, round(offered.rate * plan.seconds))
    sender, arrivals = await _open_loop(nc, stack, plan, offered.rate, events, payload, say)
    appended = sum(1 for _ in sender.landed())
    report.resources.append(await stack.sample("live", appended, offered.stored + appended))
    report.live = _report(plan, offered, sender, arrivals)


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
) -> tuple[OpenLoop, _Arrivals]:
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
        send = esdb_sender(nc, plan.store, plan.stream, payload, plan.timeout)
        sender = OpenLoop(send, rate, events, "live append")
        ticker = asyncio.create_task(report_progress(sender.progress, _PROGRESS_EVERY_S, say))
        try:
            await sender.run()
        finally:
            ticker.cancel()
        await wait_arrivals(sender, arrivals.at, _GRACE_S)
    finally:
        await sub_nc.close()
    return sender, arrivals


def _report(
    plan: LivePlan, offered: OfferedRate, sender: OpenLoop, arrivals: _Arrivals
) -> LiveReport:
    latencies, missing = arrival_latencies(sender, arrivals.at, "live message")
    ours = {p for _, p in sender.landed()}
    wrong_subject = sum(
        1
        for i, p in sender.landed()
        if p in arrivals.subject
        and arrivals.subject[p] != event_subject(plan.store, plan.stream(i), EVENT_TYPE)
    )
    sent_to_live = latencies[0]
    return LiveReport(
        **msgspec.structs.asdict(sender.figures()),
        subject=all_events_subject(plan.store),
        rate_from=offered.rate_from,
        max_rate=offered.max_rate,
        probe=offered.probe,
        received=sum(1 for p in ours if p in arrivals.at),
        missing=missing,
        duplicates=sum(n for p, n in arrivals.repeats.items() if p in ours),
        wrong_subject=wrong_subject,
        foreign=sum(1 for p in arrivals.at if p not in ours) + arrivals.unpositioned,
        slow_consumer=arrivals.slow_consumer,
        latencies=latencies,
        target_p99_ms=LIVE_TARGET_P99_MS,
        met=bool(sent_to_live.count) and not missing and sent_to_live.p99_ms <= LIVE_TARGET_P99_MS,
    )
