"""Open-loop appends at a fixed rate, and the closed-loop probe that sets the rate.

The probe is the closed-loop esdb append phase (after one warm-up append per client); its
events/s is the maximum append rate, and a scenario offers `LIVE_LOAD` of it (or `--rate`).
Then append `i` is due at `start + i / rate`: a scheduler sleeps until the next slot and
starts every append whose slot has come, each in a task of its own, so a slow reply never
delays the next send and the offered rate stays what was asked. The sender notes when each
append was sent and answered and where it landed (a global position, or a JetStream stream
sequence), which is what the scenarios join their arrivals on.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from esdb.benchmarks.appends import (
    EVENT_TYPE,
    AppendBody,
    AppendFailed,
    AppendPlan,
    AppendReply,
    AppendRun,
    BenchEvent,
    PhaseSource,
    Progress,
    client_append_subject,
    esdb_appends,
)
from esdb.benchmarks.figures import (
    LIVE_LOAD,
    AppendFigures,
    BenchReport,
    LatencyFigures,
    OpenLoopFigures,
    latency_figures,
    percentile,
)
from esdb.benchmarks.rounds import WithProgress
from esdb.benchmarks.stack import BenchStack

SendOne = Callable[[int], Awaitable[int]]
"""Send append `i`; where it landed (global position or stream sequence), or `AppendFailed`."""

_START_DELAY_S = 0.05

_encode = msgspec.msgpack.Encoder().encode
_append_reply = msgspec.msgpack.Decoder(AppendReply).decode


class LoadError(RuntimeError):
    """An open-loop scenario could not run."""


class ProbeSource(PhaseSource, Protocol):
    """What the probe takes from a scenario's plan."""

    @property
    def store(self) -> str: ...

    @property
    def rate(self) -> float | None: ...

    @property
    def probe_events(self) -> int: ...


@dataclass(frozen=True)
class OfferedRate:
    """The rate a scenario offers and where it came from."""

    rate: float
    rate_from: str
    """`probe` (`LIVE_LOAD` of the rate the closed-loop probe reached) or `--rate`."""
    max_rate: float | None
    probe: AppendFigures | None
    stored: int
    """Events the probe stored."""


async def offered_rate(
    nc: NatsClient,
    stack: BenchStack,
    plan: ProbeSource,
    payload: bytes,
    report: BenchReport,
    say: Callable[[str], None],
    with_progress: WithProgress,
) -> OfferedRate:
    """`plan.rate`, or `LIVE_LOAD` of the rate a closed-loop probe reaches (with a resource
    sample after the probe)."""
    if plan.rate is not None:
        return OfferedRate(plan.rate, "--rate", None, None, 0)
    probe_run, stored = await _probe(nc, plan, payload, say, with_progress)
    report.resources.append(await stack.sample("probe", stored, stored))
    probe = probe_run.log.figures("esdb append (closed loop)", probe_run.seconds)
    rate = probe.events_per_s * LIVE_LOAD
    if rate <= 0:
        raise LoadError("the offered rate is 0 events/s (did every probe append fail?)")
    say(
        f"max append rate {probe.events_per_s:,.0f} events/s; offering {rate:,.0f} events/s "
        f"({LIVE_LOAD:.0%})"
    )
    return OfferedRate(rate, "probe", probe.events_per_s, probe, stored)


async def _probe(
    nc: NatsClient,
    plan: ProbeSource,
    payload: bytes,
    say: Callable[[str], None],
    with_progress: WithProgress,
) -> tuple[AppendRun, int]:
    """The closed-loop append phase (after one warm-up append per client), and how many
    events the warm-up and the phase stored."""

    def append_plan(label: str, events: int) -> AppendPlan:
        return AppendPlan.for_phase(plan, label, events)

    say(f"max append rate probe, {plan.probe_events:,} appends from {plan.clients} clients...")
    warm = await esdb_appends(
        nc, plan.store, append_plan("pw", plan.clients), payload, Progress("", 0)
    )
    progress = Progress("esdb append", plan.probe_events)
    run = await with_progress(
        progress,
        esdb_appends(nc, plan.store, append_plan("probe", plan.probe_events), payload, progress),
    )
    return run, warm.log.events + run.log.events


def esdb_sender(
    nc: NatsClient, store: str, stream_of: Callable[[int], str], payload: bytes, timeout: float
) -> SendOne:
    """Append `i` as one event to stream `stream_of(i)`, a raw msgpack request with
    `expected_version: "any"`, sent as the Python client sends it; its global position."""
    subject = client_append_subject(store)

    async def send(i: int) -> int:
        body = AppendBody(
            stream=stream_of(i),
            expected_version="any",
            events=[BenchEvent(type=EVENT_TYPE, data=payload)],
        )
        try:
            reply = await nc.request(subject, _encode(body), timeout=timeout)  # msgpack, no header
        except nats.errors.TimeoutError as e:
            raise AppendFailed("nats_timeout") from e
        except nats.errors.NoRespondersError as e:
            raise AppendFailed("no_responders") from e
        result = _append_reply(reply.data)
        if result.error is not None:
            raise AppendFailed(result.error.code)
        return result.first_position

    return send


def jetstream_sender(
    js: JetStreamContext, subject_of: Callable[[int], str], payload: bytes, timeout: float
) -> SendOne:
    """Publish `i` to `subject_of(i)` and wait for JetStream's ack (no fence, as esdb's
    `"any"`); its stream sequence."""

    async def send(i: int) -> int:
        try:
            ack = await js.publish(
                subject_of(i), payload, timeout=timeout, headers={"Event-Type": EVENT_TYPE}
            )
        except nats.js.errors.APIError as e:
            raise AppendFailed(f"jetstream_{e.err_code}") from e
        except nats.errors.TimeoutError as e:
            raise AppendFailed("nats_timeout") from e
        except nats.errors.NoRespondersError as e:
            raise AppendFailed("no_responders") from e
        return int(ack.seq)

    return send


class OpenLoop:
    """Open-loop appends: append `i` is sent at `start + i / rate`, each in its own task."""

    def __init__(self, send: SendOne, rate: float, events: int, label: str) -> None:
        self.rate = rate
        self.events = events
        self.start = 0.0
        self.sent = array("d", bytes(8 * events))
        self.replied = array("d", bytes(8 * events))
        self.positions = array("q", bytes(8 * events))
        """Where append i landed; 0 while unknown or after a failure."""
        self.errors: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.progress = Progress(label, events)
        self._send = send

    def slot(self, i: int) -> float:
        """When append `i` is due (perf_counter seconds)."""
        return self.start + i / self.rate

    def landed(self) -> Iterator[tuple[int, int]]:
        """(i, position) of every acknowledged append."""
        return ((i, p) for i, p in enumerate(self.positions) if p)

    async def run(self) -> None:
        """Send every append on its slot; return when each has its answer."""
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
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.sent[i] = time.perf_counter()
        try:
            position = await self._send(i)
        except AppendFailed as e:
            self.errors[e.code] += 1
            return
        finally:
            self.in_flight -= 1
        self.replied[i] = time.perf_counter()
        self.positions[i] = position
        self.progress.done += 1

    def figures(self) -> OpenLoopFigures:
        """What was offered and sent, how late against the timetable, and what failed."""
        lags = sorted(sent - self.slot(i) for i, sent in enumerate(self.sent) if sent)
        sends = [s for s in self.sent if s]
        seconds = max(sends) - min(sends) if len(sends) > 1 else 0.0
        return OpenLoopFigures(
            offered_rate=round(self.rate, 1),
            planned=self.events,
            sent_rate=round((len(sends) - 1) / seconds, 1) if seconds > 0 else 0.0,
            send_seconds=round(seconds, 3),
            appended=sum(1 for _ in self.landed()),
            errors=sum(self.errors.values()),
            error_codes=dict(self.errors),
            max_in_flight=self.max_in_flight,
            schedule_lag_p99_ms=round(percentile(lags, 99) * 1000, 3),
            schedule_lag_max_ms=round(lags[-1] * 1000, 3) if lags else 0.0,
        )


def arrival_latencies(
    sender: OpenLoop, arrived: Mapping[int, float], where: str
) -> tuple[list[LatencyFigures], int]:
    """Per acknowledged append whose event arrived (`arrived`: position -> perf_counter):
    sent -> `where`, reply -> `where`, sent -> reply, timetable slot -> `where`; and how many
    acknowledged appends never arrived."""
    sent_to: list[float] = []
    reply_to: list[float] = []
    sent_to_reply: list[float] = []
    slot_to: list[float] = []
    missing = 0
    for i, position in sender.landed():
        sent, replied = sender.sent[i], sender.replied[i]
        sent_to_reply.append(replied - sent)
        at = arrived.get(position)
        if at is None:
            missing += 1
            continue
        sent_to.append(at - sent)
        reply_to.append(at - replied)
        slot_to.append(at - sender.slot(i))
    latencies = [
        latency_figures(f"append sent -> {where}", sent_to),
        latency_figures(f"append reply -> {where}", reply_to),
        latency_figures("append sent -> reply", sent_to_reply),
        latency_figures(f"timetable slot -> {where}", slot_to),
    ]
    return latencies, missing


async def wait_arrivals(sender: OpenLoop, arrived: Mapping[int, object], quiet_s: float) -> None:
    """Until every acknowledged append has arrived, or none arrived for `quiet_s`; then a
    moment more for repeats, which come right behind."""
    waiting = [p for _, p in sender.landed()]
    seen, quiet_since = len(arrived), time.perf_counter()
    while waiting and time.perf_counter() - quiet_since < quiet_s:
        await asyncio.sleep(0.01)
        waiting = [p for p in waiting if p not in arrived]
        if len(arrived) != seen:
            seen, quiet_since = len(arrived), time.perf_counter()
    await asyncio.sleep(0.1)
