"""Persistent delivery with acks under load: esdb's consumer group against a JetStream durable
consumer, each fed by open-loop appends at the same rate.

The rate is `LIVE_LOAD` of the maximum append rate, which the closed-loop probe measures (or
`--rate`); see `open_loop`. Each side then runs on its own, esdb first:

- *esdb*: a consumer group (`Client.create_subscription`, this run's category, `start="end"`,
  `max_in_flight` per consumer) and `--consumers` consumers, each a `Client` of its own that
  `consume`s the group and acks every delivery; the appends go to the category's streams.
- *JetStream*: a durable push consumer with explicit acks and a deliver group (the
  competing-consumer queue that nats-py offers: the server hands each message to one member
  of the queue group and stops at `max_ack_pending`, here `max_in_flight` x consumers), on the
  stream the append bench's peer writes to, and as many consumers, each a connection of its
  own that acks every message; the appends are publishes to this run's subjects.

Every delivery is timed in the consumer's handler and joined to its append by position (esdb)
or stream sequence (JetStream). Once a second the group's state is sampled: esdb's
`subscription_info` (`lag` = last position - checkpoint, `in_flight`, `checkpoint`), and
JetStream's consumer info (last selected sequence - ack floor, acks pending, ack floor).
Every acknowledged append must be delivered (`missing` must be 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from esdb.benchmarks.appends import JETSTREAM_STREAM, jetstream_run_subjects, report_progress
from esdb.benchmarks.figures import (
    BenchReport,
    DeliveryFigures,
    LagSample,
    PersistentRatios,
    PersistentReport,
    lag_figures,
    quotient,
)
from esdb.benchmarks.open_loop import (
    LoadError,
    OpenLoop,
    SendOne,
    arrival_latencies,
    esdb_sender,
    jetstream_sender,
    offered_rate,
    wait_arrivals,
)
from esdb.benchmarks.rounds import WithProgress
from esdb.benchmarks.stack import BenchStack
from esdb.client import Client
from esdb.client.consumer import PersistentSubscription
from esdb.contracts.errors import EsdbError, Timeout, Unavailable
from esdb.contracts.subscriptions import DEFAULT_MAX_RETRIES, DEFAULT_MESSAGE_TIMEOUT_MS

ESDB_GROUP = "esdb consumer group"
JETSTREAM_DURABLE = "jetstream durable consumer"

_SAMPLE_EVERY_S = 1.0
_PROGRESS_EVERY_S = 5.0
_QUIET_S = 10.0
"""After the last reply, stop waiting for deliveries once none came for this long."""
_CREATE_RETRY_S = 30.0
"""How long a group's creation is retried while no subscription service is active."""


@dataclass(frozen=True)
class PersistentPlan:
    """What the persistent scenario does."""

    run_id: str
    store: str
    rate: float | None
    """events/s to offer; None: `LIVE_LOAD` of what the closed-loop probe reaches."""
    events: int | None
    """Appends per side; None: `seconds` worth at the offered rate."""
    seconds: float
    probe_events: int
    clients: int
    """Clients of the closed-loop probe."""
    stream_length: int
    timeout: float
    consumers: int
    max_in_flight: int
    """Per consumer."""

    @property
    def name(self) -> str:
        """The esdb group's and the JetStream durable's name."""
        return f"bench_persistent_{self.run_id}"

    @property
    def category(self) -> str:
        """The esdb category this run appends to, which its group selects."""
        return f"persistent_{self.run_id}"

    def stream(self, i: int) -> str:
        """The esdb stream of append `i`."""
        return f"{self.category}-{i // self.stream_length}"

    def subject(self, i: int) -> str:
        """The JetStream subject of publish `i`."""
        return f"{jetstream_run_subjects(self.run_id)[:-1]}persistent.{i // self.stream_length}"


async def run_persistent(
    nc: NatsClient,
    js: JetStreamContext,
    stack: BenchStack,
    plan: PersistentPlan,
    payload: bytes,
    report: BenchReport,
    say: Callable[[str], None],
    with_progress: WithProgress,
) -> None:
    """Probe the maximum append rate (unless given), then esdb's group and JetStream's
    durable under that load, into `report.persistent`; a resource sample after each."""
    offered = await offered_rate(nc, stack, plan, payload, report, say, with_progress)
    rate = offered.rate
    events = plan.events if plan.events is not None else max(1, round(rate * plan.seconds))
    groups: list[tuple[str, Group, SendOne]] = [
        (
            "esdb persistent",
            EsdbGroup(stack.url, plan),
            esdb_sender(nc, plan.store, plan.stream, payload, plan.timeout),
        ),
        (
            "js persistent",
            JetStreamDurable(stack.urls, js, plan),
            jetstream_sender(js, plan.subject, payload, plan.timeout),
        ),
    ]
    sides: list[DeliveryFigures] = []
    stored = offered.stored
    for label, group, send in groups:
        say(
            f"persistent: {group.path}, {plan.consumers} consumers; {events:,} appends at "
            f"{rate:,.0f} events/s ({events / rate:.1f} s)..."
        )
        sender = OpenLoop(send, rate, events, label)
        side = await _phase(group, sender, say)
        sides.append(side)
        if isinstance(group, EsdbGroup):
            stored += side.appended
        report.resources.append(await stack.sample(label, side.appended, stored))
        say(
            f"persistent: {group.path}: {side.deliveries_per_s:,.0f} deliveries/s, p99 "
            f"{side.latencies[0].p99_ms:.1f} ms, max lag {side.lag.max:,}, missing {side.missing}"
        )
    esdb, peer = sides
    report.persistent = PersistentReport(
        rate_from=offered.rate_from,
        max_rate=offered.max_rate,
        probe=offered.probe,
        name=plan.name,
        consumers=plan.consumers,
        max_in_flight=plan.max_in_flight,
        sides=sides,
        ratios=PersistentRatios(
            deliveries_per_s=quotient(esdb.deliveries_per_s, peer.deliveries_per_s),
            p50_ms=quotient(esdb.latencies[0].p50_ms, peer.latencies[0].p50_ms),
            p99_ms=quotient(esdb.latencies[0].p99_ms, peer.latencies[0].p99_ms),
            max_lag=quotient(esdb.lag.max, peer.lag.max),
        ),
    )


class Deliveries:
    """What the consumers got: each position's first delivery time, and every repeat."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.repeats: Counter[int] = Counter()
        self.total = 0
        self.redeliveries = 0

    def note(self, position: int, attempt: int) -> None:
        """A delivery of `position`, its `attempt`-th (1: the first)."""
        now = time.perf_counter()
        self.total += 1
        if attempt > 1:
            self.redeliveries += 1
        if position in self.at:
            self.repeats[position] += 1
        else:
            self.at[position] = now


class GroupState(msgspec.Struct, frozen=True):
    """A group's state as its server reports it."""

    lag: int
    in_flight: int
    checkpoint: int


class Group(Protocol):
    """Competing consumers that ack every delivery, as an async context: joined on entry,
    gone (and the group deleted) on exit."""

    @property
    def path(self) -> str:
        """The side's name in the report."""
        ...

    @property
    def description(self) -> str:
        """What consumes, for the report."""
        ...

    @property
    def deliveries(self) -> Deliveries:
        """What its consumers got."""
        ...

    async def __aenter__(self) -> Group: ...

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    async def state(self) -> GroupState:
        """The group's lag, deliveries in flight and checkpoint."""
        ...


@dataclass
class EsdbGroup:
    """An esdb consumer group and its consumers, each a `Client` of its own."""

    url: str
    plan: PersistentPlan
    path: str = ESDB_GROUP
    deliveries: Deliveries = field(default_factory=Deliveries)
    _exits: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _admin: Client | None = None

    @property
    def description(self) -> str:
        """What consumes, for the report."""
        return (
            f"group {self.plan.name} on category {self.plan.category}, {self.plan.consumers} "
            f"consumers x max_in_flight {self.plan.max_in_flight}"
        )

    async def __aenter__(self) -> EsdbGroup:
        plan = self.plan
        try:
            self._admin = await self._exits.enter_async_context(self._client())
            await self._create(self._admin)
            self._exits.push_async_callback(self._delete, self._admin)
            for n in range(plan.consumers):
                client = await self._exits.enter_async_context(self._client())
                sub = await client.consume(
                    plan.name, consumer=f"bench-{n}", max_in_flight=plan.max_in_flight
                )
                consuming = asyncio.create_task(self._consume(sub))
                self._exits.push_async_callback(_leave, sub, consuming)
                # Answered on the same connection: the server has the queue subscription.
                await client.subscription_info(plan.name)
        except BaseException:
            await self._exits.aclose()
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._exits.aclose()

    def _client(self) -> contextlib.AbstractAsyncContextManager[Client]:
        return Client.connect(self.url, store=self.plan.store, timeout=self.plan.timeout)

    async def _create(self, admin: Client) -> None:
        deadline = time.perf_counter() + _CREATE_RETRY_S
        while True:
            try:
                await admin.create_subscription(
                    self.plan.name,
                    category=self.plan.category,
                    start="end",
                    max_in_flight=self.plan.max_in_flight,
                )
                return
            except (Unavailable, Timeout) as e:
                if time.perf_counter() > deadline:
                    raise LoadError(f"cannot create consumer group {self.plan.name}: {e}") from e
                await asyncio.sleep(0.1)

    async def _delete(self, admin: Client) -> None:
        with contextlib.suppress(EsdbError):
            await admin.delete_subscription(self.plan.name)

    async def _consume(self, sub: PersistentSubscription) -> None:
        async for delivered in sub:
            self.deliveries.note(delivered.position, delivered.attempt)
            sub.ack(delivered)

    async def state(self) -> GroupState:
        """`subscription_info`: lag to the logged checkpoint, in flight, the checkpoint."""
        assert self._admin is not None, "state() of a group not joined"
        info = await self._admin.subscription_info(self.plan.name)
        return GroupState(lag=info.lag, in_flight=info.in_flight, checkpoint=info.checkpoint)


async def _leave(sub: PersistentSubscription, consuming: asyncio.Task[None]) -> None:
    """Send the consumer's last acks and leave the group; its loop ends with that."""
    await sub.close()
    await asyncio.wait({consuming}, timeout=_QUIET_S)
    consuming.cancel()


@dataclass
class JetStreamDurable:
    """A durable push consumer with explicit acks and a deliver group on `BENCH_ES`, and its
    consumers, each a connection of its own."""

    urls: list[str]
    js: JetStreamContext
    plan: PersistentPlan
    path: str = JETSTREAM_DURABLE
    deliveries: Deliveries = field(default_factory=Deliveries)
    _exits: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    @property
    def description(self) -> str:
        """What consumes, for the report."""
        return (
            f"durable {self.plan.name} on {JETSTREAM_STREAM} {self._filter}, deliver group, "
            f"{self.plan.consumers} consumers, max_ack_pending {self._max_ack_pending}"
        )

    @property
    def _filter(self) -> str:
        return jetstream_run_subjects(self.plan.run_id)

    @property
    def _max_ack_pending(self) -> int:
        return self.plan.max_in_flight * self.plan.consumers

    async def __aenter__(self) -> JetStreamDurable:
        plan = self.plan
        try:
            await self.js.add_consumer(
                JETSTREAM_STREAM,
                ConsumerConfig(
                    durable_name=plan.name,
                    deliver_subject=f"_bench.deliver.{plan.name}",
                    deliver_group=plan.name,
                    deliver_policy=DeliverPolicy.NEW,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=DEFAULT_MESSAGE_TIMEOUT_MS / 1000,
                    max_deliver=DEFAULT_MAX_RETRIES + 1,
                    max_ack_pending=self._max_ack_pending,
                    filter_subject=self._filter,
                ),
            )
            self._exits.push_async_callback(self._delete)
            for n in range(plan.consumers):
                nc = await nats.connect(
                    self.urls, name=f"esdb-bench-js-consumer-{n}", max_reconnect_attempts=3
                )
                self._exits.push_async_callback(nc.close)
                await nc.jetstream(timeout=plan.timeout).subscribe(
                    self._filter,
                    queue=plan.name,
                    durable=plan.name,
                    stream=JETSTREAM_STREAM,
                    cb=self._on_message,
                    manual_ack=True,
                )
                await nc.flush()
        except BaseException:
            await self._exits.aclose()
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._exits.aclose()

    async def _on_message(self, msg: Msg) -> None:
        meta = msg.metadata
        self.deliveries.note(meta.sequence.stream, meta.num_delivered)
        await msg.ack()

    async def _delete(self) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self.js.delete_consumer(JETSTREAM_STREAM, self.plan.name)

    async def state(self) -> GroupState:
        """Consumer info: last selected sequence - ack floor, acks pending, the ack floor."""
        info = await self.js.consumer_info(JETSTREAM_STREAM, self.plan.name)
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        delivered = info.delivered.stream_seq if info.delivered else 0
        last = delivered + (info.num_pending or 0)
        return GroupState(
            lag=max(0, last - floor), in_flight=info.num_ack_pending or 0, checkpoint=floor
        )


async def _phase(group: Group, sender: OpenLoop, say: Callable[[str], None]) -> DeliveryFigures:
    """Join the group, send the appends while sampling its state, wait for the deliveries."""
    samples: list[LagSample] = []
    failed: list[BaseException] = []
    async with group:
        sending = asyncio.create_task(sender.run())
        sampling = asyncio.create_task(_sample(group, sender, samples, failed))
        ticker = asyncio.create_task(report_progress(sender.progress, _PROGRESS_EVERY_S, say))
        try:
            await sending
        finally:
            sampling.cancel()
            ticker.cancel()
            sending.cancel()
        await wait_arrivals(sender, group.deliveries.at, _QUIET_S)
    return _figures(group, sender, samples, len(failed))


async def _sample(
    group: Group, sender: OpenLoop, samples: list[LagSample], failed: list[BaseException]
) -> None:
    """The group's state once a second from the first send, at a random moment of each
    second (`failed` collects the requests that did not answer).

    esdb logs a group's checkpoint once a second, so its `lag` saws between what is in flight
    and a second's worth of events; samples on a fixed one-second grid would lock to one
    phase of that cycle, and which one would decide whether the lag looked low or high."""
    second = 0
    while True:
        due = sender.start + (second + random.random()) * _SAMPLE_EVERY_S
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        second += 1
        at = time.perf_counter() - sender.start
        try:
            state = await group.state()
        except (EsdbError, nats.errors.Error) as e:
            failed.append(e)
            continue
        # Acknowledged appends minus positions delivered (a delivery may beat its reply).
        undelivered = max(0, sender.progress.done - len(group.deliveries.at))
        samples.append(
            LagSample(
                at_s=round(at, 3),
                lag=state.lag,
                in_flight=state.in_flight,
                checkpoint=state.checkpoint,
                undelivered=undelivered,
            )
        )


def _figures(
    group: Group, sender: OpenLoop, samples: list[LagSample], failed_samples: int
) -> DeliveryFigures:
    deliveries = group.deliveries
    latencies, missing = arrival_latencies(sender, deliveries.at, "delivered")
    ours = {p for _, p in sender.landed()}
    firsts = [deliveries.at[p] for p in ours if p in deliveries.at]
    sends = [s for s in sender.sent if s]
    seconds = max(firsts) - min(sends) if firsts and sends else 0.0
    load = sender.figures()
    return DeliveryFigures(
        **msgspec.structs.asdict(load),
        path=group.path,
        consumer=group.description,
        delivered=len(firsts),
        missing=missing,
        deliveries=deliveries.total,
        redeliveries=deliveries.redeliveries,
        duplicates=sum(n for p, n in deliveries.repeats.items() if p in ours),
        foreign=sum(1 for p in deliveries.at if p not in ours),
        deliveries_per_s=round(len(firsts) / seconds, 1) if seconds > 0 else 0.0,
        drain_s=round(max(firsts) - max(sends), 3) if firsts and sends else 0.0,
        latencies=latencies,
        lag=lag_figures(samples, load.offered_rate, failed_samples),
    )
