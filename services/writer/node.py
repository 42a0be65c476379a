"""A writer node: tails the log into LMDB, competes for the lease, and sequences while leader."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from esdb.contracts.api import NodeStatus
from esdb.contracts.commands import (
    OpsCommand,
    WriteBatch,
    WriteBatchReply,
    WriteOutcome,
)
from esdb.contracts.errors import InvalidRequest, Unavailable
from esdb.contracts.log import CreateStoreOp
from esdb.contracts.subjects import (
    HANDOVER_WAIT_S,
    NODE_STATUS,
    WRITE_OPERATIONS,
    WRITER_COMMANDS,
    WRITER_HANDOVER,
    WRITER_OPS,
    WRITER_SERVING,
    writer_step_down_subject,
)
from esdb.services.writer.applier import Applier
from esdb.services.writer.apply import ApplyError
from esdb.services.writer.front import Replies, WriteFront
from esdb.services.writer.images import ImageKeeper
from esdb.services.writer.lease import Lease
from esdb.services.writer.log import ReplicatedLog
from esdb.services.writer.monitor import NodeMonitor
from esdb.services.writer.sequencer import LeadershipLost, OpsRequest, Sequencer
from esdb.shared.metrics import RequestMetrics, Sampled, WriterMetrics
from esdb.shared.nats_connection import concurrently
from esdb.shared.settings import Settings, advertised_host
from esdb.shared.telemetry import Telemetry, nats_problem
from esdb.shared.tracing import child_span, incoming

log = logging.getLogger(__name__)

PIPELINE_DEPTH = 3
"""Log entries in flight at once on a single server."""
# A node that cannot apply (its disk is full) tries again this often; it never skips.
STALL_RETRY_S = 1.0
READY_LAG_ENTRIES = 1000
"""A follower further behind the log than this is not ready (`/readyz`): it is catching up."""
HOLD_OFF_LEASE_TTLS = 3
"""After handing over, a node leaves the lease to the others for this many lease TTLs."""

_batch_decoder = msgspec.msgpack.Decoder(WriteBatch)
_ops_decoder = msgspec.msgpack.Decoder(OpsCommand)
_encoder = msgspec.msgpack.Encoder()


async def _unless(lost: asyncio.Event, work: Coroutine[Any, Any, None]) -> None:
    """Run `work`, abandoning it with LeadershipLost if `lost` is set first."""
    task = asyncio.create_task(work)
    waiter = asyncio.create_task(lost.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if not task.done():
        task.cancel()
        raise LeadershipLost("lease lost while taking over")
    task.result()


class WriterNode:
    """Everything one writer process does, wired from explicit collaborators."""

    def __init__(
        self,
        settings: Settings,
        nc: NatsClient,
        log_: ReplicatedLog,
        applier: Applier,
        lease: Lease,
        image_keeper: ImageKeeper | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._settings = settings
        self._nc = nc
        self._log = log_
        self._applier = applier
        self._lease = lease
        self._image_keeper = image_keeper
        self._sequencer: Sequencer | None = None
        self._log_last = 0
        self._following = asyncio.Event()
        self._following.set()
        self._monitor = NodeMonitor(nc, settings.node_id, applier.catalog.applied_sequence)
        self._handover = asyncio.Event()
        self._wake = asyncio.Event()
        self._hold_off_until = 0.0
        self.role = "follower"
        self.stalled: str | None = None
        self._tracer = None if telemetry is None else telemetry.tracer
        self._metrics = None if telemetry is None else WriterMetrics(telemetry.registry)
        registry = CollectorRegistry() if telemetry is None else telemetry.registry
        self._requests = RequestMetrics(registry, WRITE_OPERATIONS, service="writer")
        if telemetry is not None:
            self._sample_levels(telemetry)

    def _sample_levels(self, telemetry: Telemetry) -> None:
        node = self._settings.node_id

        def levels(value: Callable[[], float]) -> Callable[[], list[tuple[list[str], float]]]:
            return lambda: [([node], value())]

        for name, documentation, value in (
            ("esdb_applied_sequence", "Last log sequence applied on this node", self._applied),
            ("esdb_log_last_sequence", "Last log sequence this node has seen", self._last_seen),
            ("esdb_follower_lag", "Log entries seen but not yet applied here", self._lag),
            ("esdb_writer_leader", "1 while this node's writer leads, else 0", self._leading),
        ):
            Sampled(telemetry.registry, name, documentation, ["node"], levels(value))

    def _applied(self) -> float:
        return self._applier.catalog.applied_sequence()

    def _last_seen(self) -> float:
        return max(self._log_last, self._applier.catalog.applied_sequence())

    def _lag(self) -> float:
        return self._last_seen() - self._applied()

    def _leading(self) -> float:
        return 1.0 if self.role == "leader" else 0.0

    async def not_ready(self) -> str | None:
        """Why this writer cannot serve now (NATS, no lease holder known, a stall, too far
        behind the log), or None: `/readyz`."""
        problem = nats_problem(self._nc)
        if problem is not None:
            return problem
        if self.stalled is not None:
            return self.stalled
        if self.role == "leader":
            return None
        if self._lease.holder_seen is None:
            return "no writer leader known yet"
        lag = await self._log.last_sequence() - self._applier.catalog.applied_sequence()
        if lag > READY_LAG_ENTRIES:
            return f"catching up: {lag} log entries to apply"
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set or a fatal error (a bad log entry) ends the node."""
        await self._check_log_covers_state()
        subs = [
            await self._nc.subscribe(NODE_STATUS, cb=self._on_status),
            await self._nc.subscribe(
                writer_step_down_subject(self._settings.node_id),
                cb=concurrently(self._on_step_down),
            ),
            await self._nc.subscribe(WRITER_HANDOVER, cb=self._on_handover),
        ]
        tail = asyncio.create_task(self._tail(), name="tail")
        heartbeats = asyncio.create_task(self._monitor.run(), name="heartbeats")
        lead = asyncio.create_task(self._lead(stop), name="lead")
        stopper = asyncio.create_task(stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait({tail, lead, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stopper}:
                task.result()  # re-raise a fatal error
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError, LeadershipLost):
                await lead
            tail.cancel()
            heartbeats.cancel()
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tail
            for sub in subs:
                await sub.unsubscribe()

    async def _check_log_covers_state(self) -> None:
        last = await self._log.last_sequence()
        applied = self._applier.catalog.applied_sequence()
        if last < applied:
            raise ApplyError(
                f"{self._settings.data_dir} has applied log sequence {applied} but the log ends "
                f"at {last}: the log was lost (memory durability, or a wiped JetStream store). "
                "Remove this node's data directory to rebuild it from the log."
            )

    async def _tail(self) -> None:
        """Apply the log as it grows, except while this node leads: the leader applies its own
        entries, so the tail stops at the first one rather than receive each twice."""
        while True:
            await self._following.wait()
            try:
                entries = self._log.entries(self._applier.catalog.applied_sequence())
                try:
                    async for sequence, data in entries:
                        self._log_last = max(self._log_last, sequence)
                        await self._applier.apply_raw(sequence, data)
                        self.stalled = None
                        if not self._following.is_set():
                            break
                finally:
                    await entries.aclose()  # type: ignore[attr-defined]
            except ApplyError:
                raise
            except Unavailable as e:
                self.stalled = (
                    f"cannot apply log entry {self._applier.catalog.applied_sequence() + 1}: {e}"
                )
                log.error("%s; retrying every %s s", self.stalled, STALL_RETRY_S)
                await asyncio.sleep(STALL_RETRY_S)
            except Exception as e:
                log.warning("log tail interrupted (%s); resuming", e)
                await asyncio.sleep(0.5)

    async def _lead(self, stop: asyncio.Event) -> None:
        interval = self._settings.lease_ttl_s / 3
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self._wake.clear()
            try:
                acquired = loop.time() >= self._hold_off_until and await self._lease.try_acquire()
            except nats.errors.Error as e:
                log.warning("cannot reach the lease bucket: %s", e)
                acquired = False
            if acquired:
                log.info("%s acquired the writer lease", self._settings.node_id)
                try:
                    await self._serve_as_leader(stop, interval)
                except LeadershipLost as e:
                    log.warning("stepping down: %s", e)
                except TimeoutError:
                    log.warning("could not catch up with the log in time; giving the lease up")
                    await self._lease.release()
                finally:
                    self.role = "follower"
                    self._following.set()
            waiters = {asyncio.create_task(event.wait()) for event in (stop, self._wake)}
            await asyncio.wait(waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def _serve_as_leader(self, stop: asyncio.Event, interval: float) -> None:
        lost = asyncio.Event()
        renewing = asyncio.create_task(self._keep_lease(lost, interval), name="lease")
        try:
            await _unless(lost, self._catch_up())
            replies = Replies(self._nc)
            sequencer = Sequencer(
                self._log,
                self._applier,
                node_id=self._settings.node_id,
                max_batch_events=self._settings.max_batch_events,
                # Pipelining needs the Nats-Expected-Last-Msg-Id fence checked when the log
                # accepts an entry. A replicated stream checks it only when it applies the entry,
                # and a mismatch there stops the stream (tests/system/test_writer_ports_cluster.py)
                # so such a log gets one entry at a time, fenced by sequence alone, which is sound
                # when each entry is planned on an acknowledged prefix.
                max_in_flight=PIPELINE_DEPTH if self._log.checks_id_on_accept else 1,
                tracer=self._tracer,
                metrics=self._metrics,
                answered=replies.publish,
            )
            self._following.clear()
            await _unless(lost, self._ensure_default_store(sequencer))
            await self._sequence(sequencer, replies, stop, lost)
        finally:
            renewing.cancel()

    async def _catch_up(self) -> None:
        last = await self._log.last_sequence()
        await asyncio.wait_for(self._applier.wait_applied(last), timeout=60)

    async def _keep_lease(self, lost: asyncio.Event, interval: float) -> None:
        """Renew every `interval`; a failed renew, or none for a whole TTL, loses the lease."""
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while True:
            await asyncio.sleep(interval)
            ok = await self._lease.renew()
            if not ok or loop.time() - renewed > self._settings.lease_ttl_s:
                lost.set()
                return
            renewed = loop.time()

    async def _sequence(
        self, sequencer: Sequencer, replies: Replies, stop: asyncio.Event, lost: asyncio.Event
    ) -> None:
        run = asyncio.create_task(sequencer.run(), name="sequencer")
        keeper = self._image_keeper
        imaging = asyncio.create_task(keeper.run() if keeper else asyncio.sleep(0), name="images")
        self._sequencer = sequencer
        subs: list[Subscription] = [
            await self._nc.subscribe(WRITER_COMMANDS, cb=concurrently(self._on_commands)),
            await self._nc.subscribe(WRITER_OPS, cb=concurrently(self._on_ops)),
        ]
        front = WriteFront(
            self._nc, self._settings, sequencer, replies, self._requests, self._tracer
        )
        await front.start()
        # Cleared as the role changes, with no await between: a step-down asked for from
        # here on ends this leadership, however soon it comes.
        self._handover.clear()
        self.role = "leader"
        # Gateways answer the writes a previous leader took with it (gateway/orphans.py).
        await self._nc.publish(WRITER_SERVING, self._settings.node_id.encode())
        waiters = [asyncio.create_task(event.wait()) for event in (stop, lost, self._handover)]
        try:
            await asyncio.wait({run, *waiters}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            imaging.cancel()
            await front.stop()
            for sub in subs:
                await sub.unsubscribe()
            self._sequencer = None
            if lost.is_set():
                run.cancel()  # do not wait out appends that cannot succeed: answer `timeout`
            sequencer.close()
            with contextlib.suppress(asyncio.CancelledError):
                await run  # finishes the queued batches; raises LeadershipLost if fenced
            if (stop.is_set() or self._handover.is_set()) and not lost.is_set():
                await self._hand_over()
        if lost.is_set():
            raise LeadershipLost("lease lost")

    async def _hand_over(self) -> None:
        """Give the lease up and tell the followers that have applied what this leader did
        to take it now, rather than after their next poll."""
        await self._lease.release()
        self.role = "follower"
        loop = asyncio.get_running_loop()
        self._hold_off_until = loop.time() + HOLD_OFF_LEASE_TTLS * self._settings.lease_ttl_s
        applied = self._applier.catalog.applied_sequence()
        with contextlib.suppress(nats.errors.Error):
            await self._nc.publish(WRITER_HANDOVER, str(applied).encode())
            await self._nc.flush(timeout=1)
        log.info("%s handed the writer lease over at sequence %d", self._settings.node_id, applied)

    async def _on_handover(self, msg: Msg) -> None:
        """A leader handed over: try for the lease at once if this node applied its log."""
        with contextlib.suppress(ValueError):
            if self._applier.catalog.applied_sequence() >= int(msg.data):
                self._wake.set()

    async def _on_step_down(self, msg: Msg) -> None:
        """`esdb cluster step-down` (or a planned stop of this node): if this writer leads,
        finish the entry in flight, hand over, and answer with the new leader."""
        node = self._settings.node_id
        others = [
            peer for peer, up in self._monitor.membership.view().items() if up and peer != node
        ]
        # Alone, a step-down would only stop writes until this node took the lease back.
        was_leader = self.role == "leader" and bool(others)
        if was_leader:
            self._handover.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HANDOVER_WAIT_S
        holder = self._lease.holder_seen
        while loop.time() < deadline:
            with contextlib.suppress(nats.errors.Error):
                holder = await self._lease.holder()
            if not was_leader or (holder not in (None, node)):
                break
            await asyncio.sleep(0.02)
        reply = {"node": node, "stepped_down": was_leader, "leader": holder}
        await msg.respond(msgspec.json.encode(reply))

    async def _ensure_default_store(self, sequencer: Sequencer) -> None:
        name = self._settings.default_store
        async with self._applier.lock:
            if not self._applier.catalog.exists(name):
                await sequencer.append_locked([CreateStoreOp(store=name)])
                log.info("created store %r", name)

    async def _on_commands(self, msg: Msg) -> None:
        sequencer = self._sequencer
        try:
            batch = _batch_decoder.decode(msg.data)
        except msgspec.DecodeError as e:
            error = InvalidRequest(f"bad write batch: {e}").to_body()
            await msg.respond(_encoder.encode(WriteBatchReply([WriteOutcome(error=error)])))
            return
        span = None
        if self._tracer is not None and (context := incoming(msg.headers)) is not None:
            span = child_span(
                self._tracer,
                "writer write_batch",
                context,
                kind=SpanKind.SERVER,
                attributes={"esdb.requests": len(batch.requests)},
            )
        if sequencer is None:
            error = Unavailable("this writer is not the leader").to_body()
            outcomes = [WriteOutcome(error=error) for _ in batch.requests]
        else:
            trace = None if span is None else span.get_span_context()
            submitted = (sequencer.submit(r, trace) for r in batch.requests)
            outcomes = list(await asyncio.gather(*submitted))
        await msg.respond(_encoder.encode(WriteBatchReply(outcomes)))
        if span is not None:
            span.end()

    async def _on_ops(self, msg: Msg) -> None:
        sequencer = self._sequencer
        try:
            command = _ops_decoder.decode(msg.data)
        except msgspec.DecodeError as e:
            outcome = WriteOutcome(error=InvalidRequest(f"bad ops: {e}").to_body())
        else:
            if sequencer is None:
                outcome = WriteOutcome(error=Unavailable("not the leader").to_body())
            else:
                outcome = await sequencer.submit(OpsRequest(command.ops))
        await msg.respond(_encoder.encode(outcome))

    async def _on_status(self, msg: Msg) -> None:
        applied = self._applier.catalog.applied_sequence()
        log_hash = self._applier.catalog.log_hash().hex()
        last = max(self._log_last, applied)
        status = NodeStatus(
            node_id=self._settings.node_id,
            host=advertised_host(self._settings),
            role=self.role,
            applied_sequence=applied,
            log_last_sequence=last,
            lag=last - applied,
            stores=self._applier.catalog.names(),
            log_hash=log_hash,
            checkpoints={**self._applier.checkpoints, applied: log_hash},
            lease_holder=self._lease.holder_seen,
            members=self._monitor.membership.view(),
            stalled=self.stalled,
        )
        await msg.respond(_encoder.encode(status))
