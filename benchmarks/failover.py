"""Failover under load: kill -9 the writer leader's process and time until appends land again.

A steady load (a few clients, one event per append, exact expected versions, client-supplied
event ids) runs against a three-node stack. After a few seconds the bench kills the leader's
writer with SIGKILL and measures, from the kill:

- when another writer took the lease (the lease key changed revision; polled in the KV bucket);
- when the first append *sent after the kill* was acknowledged. Requests sent before it may
  be answered late by the dying leader, or be stuck in the gateway until their `timeout_ms`;
  either way they say nothing about when the cluster took writes again;
- when the supervisor restarted the killed writer, and when every node answered
  `cluster_status` with lag 0 (the run ends there, so the next kill starts from a healthy
  cluster).

Clients retry `timeout` and `unavailable` (and NATS-level timeouts or no responders) with the
same event ids and the same expected version, as an application must: the retry either lands
or returns the original result. Any other error is an anomaly and is counted.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from esdb.benchmarks.appends import EVENT_TYPE, MSGPACK_HEADERS, AppendReply
from esdb.benchmarks.figures import FAILOVER_TARGET_S, FailoverReport, FailoverRun
from esdb.benchmarks.stack import BenchStack
from esdb.contracts.api import ClusterStatus
from esdb.contracts.subjects import (
    LEASE_BUCKET,
    LEASE_KEY,
    SYSTEM_STORE,
    Op,
    api_subject,
    lease_holder,
)

RETRYABLE = frozenset({"timeout", "unavailable", "nats_timeout", "no_responders"})
_RETRY_PAUSE_S = 0.05
_POLL_S = 0.025


class FailoverEvent(msgspec.Struct, kw_only=True):
    """An event with a client-chosen id, so that a retry is recognised as the same append."""

    event_id: str
    type: str
    data: bytes


class FailoverAppendBody(msgspec.Struct, kw_only=True):
    """The msgpack body of one failover append."""

    stream: str
    expected_version: int | str
    events: list[FailoverEvent]
    timeout_ms: int


_encode = msgspec.msgpack.Encoder().encode
_append_reply = msgspec.msgpack.Decoder(AppendReply)
_cluster_status = msgspec.json.Decoder(ClusterStatus)


@dataclass(frozen=True)
class FailoverPlan:
    """How the failover scenario runs."""

    run_id: str
    store: str
    runs: int = 5
    clients: int = 16
    timeout_ms: int = 2000
    nodes: int = 3
    steady_s: float = 3.0
    """Load before the kill."""
    after_s: float = 1.0
    """Load kept after the first acknowledgement that follows the kill."""
    deadline_s: float = 60.0
    """A run gives up waiting for an acknowledgement (or a client for its append) after this."""
    settle_s: float = 120.0
    """How long to wait for the killed writer's restart and for every node to catch up."""


@dataclass
class _Load:
    """Shared state of the load's clients during one run."""

    plan: FailoverPlan
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = 0.0
    kill_at: float | None = None
    first_ack_at: float | None = None
    acked_before: int = 0
    retries_after: Counter[str] = field(default_factory=Counter)
    anomalies: Counter[str] = field(default_factory=Counter)
    acked: asyncio.Event = field(default_factory=asyncio.Event)


async def cluster_status(nc: NatsClient, timeout: float = 3.0) -> ClusterStatus | None:
    """`_sys.cluster_status`, or None when it cannot be had right now."""
    try:
        reply = await nc.request(api_subject(SYSTEM_STORE, Op.CLUSTER_STATUS), b"{}", timeout)
        return _cluster_status.decode(reply.data)
    except (nats.errors.Error, msgspec.DecodeError):
        return None


def _settled(status: ClusterStatus | None, nodes: int) -> bool:
    if status is None or status.leader is None or len(status.nodes) < nodes:
        return False
    applied = {n.applied_sequence for n in status.nodes}
    return all(n.lag == 0 for n in status.nodes) and len(applied) == 1


async def wait_settled(nc: NatsClient, nodes: int, timeout: float) -> bool:
    """Poll `cluster_status` until a leader exists and all `nodes` answer with lag 0 at the
    same applied sequence; False if that did not happen within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _settled(await cluster_status(nc), nodes):
            return True
        await asyncio.sleep(0.2)
    return False


async def run_failover(
    nc: NatsClient,
    js: JetStreamContext,
    stack: BenchStack,
    plan: FailoverPlan,
    payload: bytes,
    say: Callable[[str], None],
) -> FailoverReport:
    """`plan.runs` kills of the leader's writer under load, one after the other."""
    if stack.data_dir is None:
        raise FailoverError("the failover scenario needs the stack's --data-dir (pid files)")
    say(f"failover: waiting for all {plan.nodes} nodes to settle...")
    if not await wait_settled(nc, plan.nodes, plan.settle_s):
        raise FailoverError(f"the cluster did not settle within {plan.settle_s:.0f} s")
    kv = await js.key_value(LEASE_BUCKET)
    runs: list[FailoverRun] = []
    for number in range(1, plan.runs + 1):
        run = await _one_run(nc, kv, stack, plan, payload, number, say)
        runs.append(run)
        first = "none" if run.first_ack_s is None else f"{run.first_ack_s:.2f} s"
        say(
            f"  run {number}: killed writer-{run.killed} (pid {run.pid}); "
            f"lease -> {run.new_leader} after {_secs(run.lease_taken_s)}; first ack {first}; "
            f"retries {dict(run.retry_codes)}"
        )
        if run.settled_s is None:
            say("  the cluster did not settle after the run; stopping the failover runs")
            break
    median_ack = _median([r.first_ack_s for r in runs])
    return FailoverReport(
        clients=plan.clients,
        timeout_ms=plan.timeout_ms,
        runs=runs,
        median_first_ack_s=median_ack,
        median_lease_taken_s=_median([r.lease_taken_s for r in runs]),
        target_s=FAILOVER_TARGET_S,
        met=median_ack is not None and median_ack <= FAILOVER_TARGET_S,
    )


class FailoverError(RuntimeError):
    """The failover scenario could not run (no leader, no pid file, cluster never settled)."""


def _median(values: list[float | None]) -> float | None:
    """The median, a missing value (nothing happened in time) counting as infinitely long;
    None if the median is such a value."""
    if not values:
        return None
    middle = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(middle) else round(middle, 3)


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


async def _one_run(
    nc: NatsClient,
    kv: KeyValue,
    stack: BenchStack,
    plan: FailoverPlan,
    payload: bytes,
    number: int,
    say: Callable[[str], None],
) -> FailoverRun:
    load = _Load(plan)
    say(f"failover run {number}/{plan.runs}: {plan.clients} clients appending...")
    load.started = time.monotonic()
    clients = [
        asyncio.create_task(_client(nc, load, payload, f"fo-{plan.run_id}_{number}_{i}"))
        for i in range(plan.clients)
    ]
    try:
        victim, pid = await _leader_writer(nc, stack)
        await asyncio.sleep(max(0.0, plan.steady_s - (time.monotonic() - load.started)))
        steady = time.monotonic() - load.started
        os.kill(pid, signal.SIGKILL)
        load.kill_at = kill_at = time.monotonic()
        lease = asyncio.create_task(_lease_change(kv, kill_at, plan.deadline_s))
        restart = asyncio.create_task(_restarted(stack, victim, pid, kill_at, plan.settle_s))
        try:
            await asyncio.wait_for(load.acked.wait(), plan.deadline_s)
        except TimeoutError:
            say(f"  no append was acknowledged within {plan.deadline_s:.0f} s of the kill")
        await asyncio.sleep(plan.after_s)
    finally:
        load.stop.set()
        await _finish(clients, load, plan.deadline_s)
    new_leader, lease_s = await lease
    restart_s = await restart
    settled = await wait_settled(nc, plan.nodes, plan.settle_s)
    return FailoverRun(
        run=number,
        killed=victim,
        pid=pid,
        new_leader=new_leader,
        lease_taken_s=_round(lease_s),
        first_ack_s=_round(None if load.first_ack_at is None else load.first_ack_at - kill_at),
        appends_before=load.acked_before,
        events_per_s_before=round(load.acked_before / steady, 1) if steady > 0 else 0.0,
        retries=sum(load.retries_after.values()),
        retry_codes=dict(load.retries_after),
        anomalies=dict(load.anomalies),
        restart_s=_round(restart_s),
        settled_s=_round(time.monotonic() - kill_at) if settled else None,
    )


async def _leader_writer(nc: NatsClient, stack: BenchStack) -> tuple[str, int]:
    """The node whose writer leads (per `cluster_status`) and that writer's pid."""
    status = await cluster_status(nc)
    if status is None or status.leader is None:
        status = await cluster_status(nc)
    if status is None or status.leader is None:
        raise FailoverError("no writer leader to kill (cluster_status names none)")
    pid = stack.pid(f"writer-{status.leader}")
    if pid is None:
        raise FailoverError(f"no pid file for writer-{status.leader} under {stack.data_dir}/run")
    return status.leader, pid


async def _finish(clients: list[asyncio.Task[None]], load: _Load, timeout: float) -> None:
    """Let every client finish the append it is on (retrying it until acknowledged)."""
    done, pending = await asyncio.wait(clients, timeout=timeout)
    for task in pending:
        task.cancel()
        load.anomalies["client still retrying at the end"] += 1
    for task in done:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            load.anomalies[type(error).__name__] += 1


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def _client(nc: NatsClient, load: _Load, payload: bytes, stream_base: str) -> None:
    """Append one event at a time to its own streams until told to stop; every append is
    retried with the same ids until it is acknowledged or fails for a non-retryable reason."""
    plan = load.plan
    subject = api_subject(plan.store, Op.APPEND)
    request_timeout = plan.timeout_ms / 1000 + 2.0
    stream_no, version = 0, -1
    while not load.stop.is_set():
        body = _encode(
            FailoverAppendBody(
                stream=f"{stream_base}_{stream_no}",
                expected_version="no_stream" if version < 0 else version,
                events=[FailoverEvent(event_id=str(uuid.uuid4()), type=EVENT_TYPE, data=payload)],
                timeout_ms=plan.timeout_ms,
            )
        )
        give_up = time.monotonic() + plan.deadline_s
        while True:
            sent = time.monotonic()
            code: str | None
            try:
                reply = await nc.request(
                    subject, body, timeout=request_timeout, headers=MSGPACK_HEADERS
                )
                result = _append_reply.decode(reply.data)
                code = None if result.error is None else result.error.code
            except nats.errors.NoRespondersError:
                code = "no_responders"
            except nats.errors.TimeoutError:
                code = "nats_timeout"
            now = time.monotonic()
            if code is None:
                if load.kill_at is None:
                    load.acked_before += 1
                elif sent > load.kill_at and load.first_ack_at is None:
                    load.first_ack_at = now
                    load.acked.set()
                version = result.last_version
                break
            if code in RETRYABLE and load.kill_at is None:
                load.anomalies[f"{code} before the kill"] += 1
            elif code in RETRYABLE:
                load.retries_after[code] += 1
            if code not in RETRYABLE or now > give_up:
                if code in RETRYABLE:
                    code = f"gave up after {code}"
                load.anomalies[code] += 1
                stream_no, version = stream_no + 1, -1  # the stream's version is unknown now
                break
            await asyncio.sleep(_RETRY_PAUSE_S)


async def _lease_change(
    kv: KeyValue, kill_at: float, timeout: float
) -> tuple[str | None, float | None]:
    """Who took the writer lease after the kill, and how long after it: polls the lease key
    until its revision differs from the one it had just after the kill."""
    baseline: int | None = None
    first = True
    while time.monotonic() - kill_at < timeout:
        try:
            entry = await kv.get(LEASE_KEY)
            revision: int | None = entry.revision
            holder = lease_holder(entry.value)
        except nats.js.errors.KeyNotFoundError:
            revision, holder = None, None
        except nats.errors.Error:
            await asyncio.sleep(_POLL_S)
            continue
        if first:
            baseline, first = revision, False
        elif revision is not None and revision != baseline:
            return holder, time.monotonic() - kill_at
        await asyncio.sleep(_POLL_S)
    return None, None


async def _restarted(
    stack: BenchStack, node: str, old_pid: int, kill_at: float, timeout: float
) -> float | None:
    """Seconds from the kill until the supervisor wrote a new pid for the killed writer."""
    while time.monotonic() - kill_at < timeout:
        pid = stack.pid(f"writer-{node}")
        if pid is not None and pid != old_pid:
            return time.monotonic() - kill_at
        await asyncio.sleep(0.05)
    return None
