"""Figures for a cluster across hosts (issue 13, "Measure and report"). Every node is its own
`esdb up --node-id --host --join` in a network namespace of its own, on a private bridge
(`tests/system/hosts.py`), with fsync durability. Needs root, like the chaos run:

    python -m tests.system.multi_host_figures [--what failover,join,gaps,throughput] [...]

- failover: kill -9 every process of the writer leader's host (nats-server included) under
  load; the time from the kill to the first acknowledged append sent after it. Each run kills
  the current leader's host of one cluster, then starts that host again and waits until every
  node applied the whole log, so the next run starts from three caught-up nodes.
- join: append `--join-events` events, `--fill-batch` per append with `--fill-in-flight` appends
  at once; then start node4 naming one member and time its `esdb ready` line. Its writer logs
  whether it restored an image, and of which log sequence; the rest it replayed from the log.
  Once per `--image-every` setting, each on a cluster of its own: the fill makes a few hundred
  log entries (each a batch of a few appends), fewer than the default 10,000 between images,
  so with the default (0 here) no image exists and node4 replays the whole log.
- gaps: the longest time without an acknowledged append while `_sys.cluster_step_down` hands
  the leadership over, and while every node is restarted in turn (SIGTERM, which hands the
  leadership over first, then the same command again, waiting for its `ready` line).
- throughput: closed-loop appends/s on three nodes, then on five (node4 and node5 join), with
  the log on three replicas and then on five.

Load comes from `--clients` clients, each with a NATS connection of its own to one node's URL
(spread over the nodes, as applications would be; a client learns the other servers from its
own and reconnects to one of them when its node goes). Each appends one event at a time with
an expected version to a stream of its own and retries `timeout` and `unavailable` with the
same event ids. Afterwards the history checker reads every node's LMDB files (for the join,
whose million events are not checked one by one, every node must apply the whole log and
agree on its hash).
Figures on two shared cores are noisy: every run's value is printed, not only the median."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from esdb.contracts.subjects import CLUSTER_STREAMS, IMAGE_BUCKET, IMAGE_NAME
from esdb.services.writer.images import latest_image
from tests.stack import Api, connect_api, wait_until
from tests.system.cluster import cluster_status, leader_index, verify_replica_events
from tests.system.cluster import wait_converged as wait_applied
from tests.system.history import History, append_until_acked
from tests.system.hosts import HostCluster
from tests.system.netns import NetnsUnavailable, PrivateNetwork, private_network

FIRST = (1, 2, 3)
HOSTS = 5
WHAT = ("failover", "join", "gaps", "throughput")
SETTLE_TIMEOUT_S = 120.0
JOIN_READY_TIMEOUT_S = 900.0
IMAGE_TIMEOUT_S = 600.0
RESTORED = re.compile(r"^(\S+ \S+) WARNING writer \S+: restored image of log sequence (\d+)")
LEASE_TAKEN = re.compile(r"^(\S+ \S+) INFO writer \S+: (\S+) acquired the writer lease")
SERVING = re.compile(r"^(\S+ \S+) INFO gateway \S+: (\S+) now leads")
"""A gateway heard the new leader announce it serves (logged only when it had writes that an
earlier leader took with it to answer)."""


@dataclass
class Row:
    """One line of the final table."""

    figure: str
    value: str
    settings: str


@dataclass
class Report:
    """The figures measured so far, printed as a table at the end."""

    rows: list[Row] = field(default_factory=list)

    def add(self, figure: str, value: str, settings: str) -> None:
        """Record a figure and print it at once, so an interrupted run keeps what it had."""
        self.rows.append(Row(figure, value, settings))
        print(f"== {figure}: {value} [{settings}]", flush=True)

    def table(self) -> str:
        """The figures as a Markdown table."""
        lines = ["| figure | value | settings |", "|---|---|---|"]
        lines += [f"| {r.figure} | {r.value} | {r.settings} |" for r in self.rows]
        return "\n".join(lines)


def note(text: str) -> None:
    """A progress line, with the time since the run started."""
    print(f"[{time.monotonic() - STARTED:7.1f} s] {text}", flush=True)


STARTED = time.monotonic()


@dataclass
class Load:
    """Closed-loop appends with expected versions from clients of their own, until stopped."""

    apis: list[Api]
    history: History = field(default_factory=History)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        """Start one worker per client."""
        self.tasks = [asyncio.create_task(self._worker(api, n)) for n, api in enumerate(self.apis)]

    async def _worker(self, api: Api, n: int) -> None:
        stream = f"fig{n}-{uuid.uuid4().hex[:8]}"
        version: int | str = "no_stream"
        while not self.stop.is_set():
            version = await append_until_acked(api, self.history, stream, version, 1, deadline_s=90)

    async def finish(self) -> None:
        """Stop after each client's append in flight; re-raise a worker's failure."""
        self.stop.set()
        await asyncio.gather(*self.tasks)

    def acked_since(self, since: float) -> int:
        """Appends acknowledged after `since`."""
        return sum(1 for a in self.history.acked if a.acked_at >= since)

    async def wait_acked(self, count: int, since: float, *, timeout: float, what: str) -> None:
        """Wait until `count` appends were acknowledged after `since`."""

        async def enough() -> bool:
            if any(task.done() for task in self.tasks):
                for task in self.tasks:
                    if task.done():
                        task.result()  # a worker gave up: say why
            return self.acked_since(since) >= count

        await wait_until(enough, timeout=timeout, what=what)

    def longest_gap(self, since: float, until: float) -> tuple[float, float]:
        """The longest time between two consecutive acknowledgements (of any client) that
        ends in [since, until], counting from the last one before `since`; and when it began."""
        times = sorted(a.acked_at for a in self.history.acked)
        before = [t for t in times if t < since]
        window = [before[-1] if before else since, *(t for t in times if since <= t <= until)]
        return max(((b - a, a) for a, b in itertools.pairwise(window)), default=(0.0, since))

    def longest_stall(self, since: float, until: float) -> float:
        """The longest one client waited between two of its own acknowledgements ending in
        [since, until]: what the unluckiest application saw."""
        by_stream: dict[str, list[float]] = {}
        for acked in self.history.acked:
            by_stream.setdefault(acked.stream, []).append(acked.acked_at)
        stall = 0.0
        for times in by_stream.values():
            times.sort()
            for a, b in itertools.pairwise(times):
                if since <= b <= until:
                    stall = max(stall, b - a)
        return stall


async def spread_clients(hosts: HostCluster, count: int, nodes: tuple[int, ...]) -> list[Api]:
    """`count` clients, client i with a connection of its own to host `nodes[i % n]` only."""
    return [await connect_api(hosts.url(nodes[i % len(nodes)])) for i in range(count)]


async def close_all(apis: list[Api]) -> None:
    """Close every client's connection."""
    for api in apis:
        with contextlib.suppress(Exception):
            await api.nc.close()


@contextlib.asynccontextmanager
async def loaded(
    hosts: HostCluster, clients: int, nodes: tuple[int, ...], history: History
) -> AsyncIterator[Load]:
    """A running `Load` (recorded in `history`) from fresh clients spread over `nodes`, once
    each client had a few appends acknowledged; stopped and closed after."""
    apis = await spread_clients(hosts, clients, nodes)
    load = Load(apis, history)
    load.start()
    try:
        await load.wait_acked(clients * 5, time.monotonic(), timeout=60, what="the load to start")
        yield load
    finally:
        try:
            await load.finish()
        finally:
            await close_all(apis)


async def settle(api: Api, nodes: tuple[int, ...]) -> int:
    """Wait until `nodes` applied the whole log and agree; the sequence they reached."""
    return await wait_applied(api, nodes, timeout=SETTLE_TIMEOUT_S)


async def check_history(
    api: Api, hosts: HostCluster, history: History, nodes: tuple[int, ...]
) -> None:
    """The history checker on every node's LMDB files, once they converged."""
    await settle(api, nodes)
    await asyncio.to_thread(verify_replica_events, {i: hosts.replica(i) for i in nodes}, history)
    note(
        f"history verified on nodes {nodes}: {len(history.acked)} appends, "
        f"{history.retries} retried"
    )


@contextlib.asynccontextmanager
async def formed(
    network: PrivateNetwork, root: Path, env: dict[str, str] | None = None, *, keep: bool = False
) -> AsyncIterator[tuple[HostCluster, Api]]:
    """Hosts 1-3 each start their node naming the three, as a new cluster's first nodes do;
    everything is stopped, and its data removed unless `keep`, afterwards."""
    hosts = HostCluster(network, root, env=env or {})
    started = time.monotonic()

    def form() -> None:
        for index in FIRST:
            hosts.spawn(index, FIRST)
        for index in FIRST:
            hosts.running[index].wait_ready(hosts.node_id(index))

    try:
        await asyncio.to_thread(form)
        note(f"formed a 3-node cluster in {time.monotonic() - started:.1f} s ({root})")
        admin = await connect_api(hosts.url(*range(1, HOSTS + 1)))
        try:
            yield hosts, admin
        finally:
            await admin.nc.close()
    finally:
        await asyncio.to_thread(hosts.stop_all)
        for index in range(1, HOSTS + 1):
            for pid in network.pids(index):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def summary(values: list[float]) -> str:
    """`median X s (a, b, ...)`."""
    every = ", ".join(f"{v:.2f}" for v in values)
    return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s ({every})"


async def stream_leaders(api: Api) -> dict[str, str]:
    """The JetStream server that leads each stream of the cluster's state (log, lease,
    members, images)."""
    js = api.nc.jetstream(timeout=5)
    leaders = {}
    for name in CLUSTER_STREAMS:
        with contextlib.suppress(Exception):
            info = await js.stream_info(name)
            if info.cluster is not None and info.cluster.leader:
                leaders[name] = info.cluster.leader
    return leaders


async def failover(
    network: PrivateNetwork, root: Path, args: argparse.Namespace, report: Report
) -> None:
    """Whole-host kill of the leader's host: kill to the first ack of an append sent after it."""
    values: list[float] = []
    async with formed(network, root / "failover", keep=args.keep) as (hosts, admin):
        history = History()
        for run in range(1, args.failover_runs + 1):
            leader = await leader_index(admin)
            led = [
                name
                for name, server in (await stream_leaders(admin)).items()
                if server == f"esdb-node{leader}"
            ]
            async with loaded(hosts, args.clients, FIRST, history) as load:
                await load.wait_acked(
                    args.clients * 5, time.monotonic(), timeout=60, what="acks before the kill"
                )
                processes, killed_at = await asyncio.to_thread(hosts.cut_power, leader)
                killed_wall = time.time() - (time.monotonic() - killed_at)

                async def recovered(killed_at: float = killed_at) -> bool:
                    return any(a.sent_at > killed_at for a in history.acked)

                await wait_until(recovered, timeout=90, what="an ack after the whole-host kill")
                first = min(a.acked_at for a in history.acked if a.sent_at > killed_at)
                values.append(first - killed_at)
                await load.wait_acked(
                    args.clients * 5, first, timeout=60, what="acks after failover"
                )
            lease = first_logged(hosts, LEASE_TAKEN, killed_wall)
            serving = first_logged(hosts, SERVING, killed_wall)
            note(
                f"failover run {run}: killed host{leader} (the writer leader, leading the "
                f"streams {', '.join(led) or 'none'}; {processes} processes); lease taken "
                f"{lease}, leader serving {serving}, first ack {values[-1]:.3f} s after the kill"
            )
            started = time.monotonic()
            await asyncio.to_thread(hosts.start, leader, FIRST)
            await settle(admin, FIRST)
            note(f"host{leader} back and caught up in {time.monotonic() - started:.1f} s")
        await check_history(admin, hosts, history, FIRST)
    report.add(
        "failover after a whole-host kill of the leader's host (kill to first ack)",
        summary(values),
        f"3 nodes, {args.clients} clients spread over them, 1 event per append, "
        f"{args.failover_runs} runs",
    )


def first_logged(hosts: HostCluster, pattern: re.Pattern[str], after: float) -> str:
    """The first line of any running node's log matching `pattern` (its groups: the time and
    a node id) after the wall-clock time `after`: `+S s by NODE`, or `not logged`."""
    found: list[tuple[float, str]] = []
    for stack in hosts.running.values():
        for line in stack.log_path.read_text(errors="replace").splitlines():
            if (match := pattern.match(line)) and (at := log_time(match.group(1))) > after:
                found.append((at, match.group(2)))
    if not found:
        return "not logged"
    at, node = min(found)
    return f"+{at - after:.2f} s by {node}"


async def fill(apis: list[Api], events: int, batch: int, in_flight: int) -> tuple[int, float]:
    """Append `events` in appends of `batch`, `in_flight` at once (each to a stream of its
    own, through the clients in turn); the appends made and the seconds taken."""
    appends = events // batch
    history = History()
    next_append = iter(range(appends))
    started = time.monotonic()

    async def worker(n: int) -> None:
        api = apis[n % len(apis)]
        stream = f"fill{n}-{uuid.uuid4().hex[:8]}"
        version: int | str = "no_stream"
        for k in next_append:
            version = await append_until_acked(api, history, stream, version, batch, deadline_s=120)
            if (k + 1) % max(1, appends // 10) == 0:
                note(f"fill: {(k + 1) * batch:,} events")

    await asyncio.gather(*(worker(n) for n in range(in_flight)))
    return appends, time.monotonic() - started


def log_time(stamp: str) -> float:
    """A Python log line's `asctime` as seconds since the epoch."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


async def wait_imaged(api: Api, sequence: int) -> None:
    """Wait until the latest image reflects at least log sequence `sequence`: the leader takes
    one every ESDB_IMAGE_EVERY_ENTRIES entries, and copying and uploading it takes a while."""
    js = api.nc.jetstream(timeout=10)

    async def imaged() -> bool:
        try:
            image = await latest_image(await js.object_store(IMAGE_BUCKET))
        except Exception:
            return False
        return image is not None and image.sequence >= sequence

    await wait_until(imaged, timeout=IMAGE_TIMEOUT_S, what=f"an image of sequence {sequence}")


async def latest_image_info(api: Api) -> tuple[int, int]:
    """The log sequence and the bytes of the latest image (0, 0 if there is none)."""
    js = api.nc.jetstream(timeout=10)
    try:
        store = await js.object_store(IMAGE_BUCKET)
        image = await latest_image(store)
        info = await store.get_info(IMAGE_NAME)
    except Exception:
        return 0, 0
    return (image.sequence if image else 0), int(info.size or 0)


async def join(
    network: PrivateNetwork, root: Path, args: argparse.Namespace, report: Report
) -> None:
    """A node joins a cluster holding `--join-events` events, once per `--image-every`."""
    for image_every in args.image_every:
        await join_once(network, root / f"join-{image_every}", args, image_every, report)


async def join_once(
    network: PrivateNetwork,
    root: Path,
    args: argparse.Namespace,
    image_every: int,
    report: Report,
) -> None:
    """Fill a fresh cluster, then time node4's join."""
    env = {"ESDB_IMAGE_EVERY_ENTRIES": str(image_every)} if image_every else {}
    async with formed(network, root, env, keep=args.keep) as (hosts, admin):
        apis = [await connect_api(hosts.url(i)) for i in FIRST]
        try:
            appends, seconds = await fill(
                apis, args.join_events, args.fill_batch, args.fill_in_flight
            )
        finally:
            await close_all(apis)
        total = appends * args.fill_batch
        note(
            f"filled {total:,} events in {appends} appends: {seconds:.1f} s, "
            f"{total / seconds:,.0f} ev/s"
        )
        sequence = await settle(admin, FIRST)
        if image_every:
            waited = time.monotonic()
            await wait_imaged(admin, sequence - image_every + 1)
            note(f"waited {time.monotonic() - waited:.1f} s for the image keeper to catch up")
        image, size = await latest_image_info(admin)
        note(
            f"log at sequence {sequence}; latest image: "
            + (f"log sequence {image}, {size / 1e6:.1f} MB" if image else "none")
        )

        spawned_wall, spawned = time.time(), time.monotonic()
        stack = hosts.spawn(4, (1,))
        await asyncio.to_thread(stack.wait_ready, "node4", JOIN_READY_TIMEOUT_S)
        ready = time.monotonic() - spawned
        status = await cluster_status(admin)
        applied = {n["node_id"]: n["applied_sequence"] for n in status.get("nodes", [])}.get(
            "node4"
        )
        restored = [
            m
            for line in stack.log_path.read_text(errors="replace").splitlines()
            if (m := RESTORED.match(line))
        ]
        if restored:
            at = log_time(restored[-1].group(1)) - spawned_wall
            image_seq = int(restored[-1].group(2))
            latest, size = await latest_image_info(admin)
            of_size = f"{size / 1e6:.0f} MB" if latest == image_seq else "size not known"
            how = (
                f"restored the image of log sequence {image_seq} ({of_size}) "
                f"{at:.1f} s after start, then replayed {(applied or sequence) - image_seq} log "
                f"entries to {applied}"
            )
        else:
            how = f"no image: replayed the whole log, {applied} entries"
        note(f"node4 ready in {ready:.1f} s: {how}")
        await settle(admin, (*FIRST, 4))
    image_setting = (
        f"ESDB_IMAGE_EVERY_ENTRIES={image_every}"
        if image_every
        else "ESDB_IMAGE_EVERY_ENTRIES at its default (10,000)"
    )
    report.add(
        f"join of node4 to a cluster holding {total:,} events (start to `esdb ready`)",
        f"{ready:.1f} s; {how}",
        f"{args.fill_batch} events per append, {args.fill_in_flight} in flight "
        f"({total / seconds:,.0f} ev/s to fill; log of {sequence} entries); {image_setting}; "
        "no load while joining",
    )


async def gap_during(
    hosts: HostCluster,
    clients: int,
    change: Callable[[float], Awaitable[str]],
    history: History,
) -> tuple[float, float, str]:
    """Run `change` (given when it began) under load from fresh clients; the longest gap
    between acks (any client), the longest one client waited, and what `change` said, with
    when the gap began."""
    async with loaded(hosts, clients, FIRST, history) as load:
        since = time.monotonic()
        said = await change(since)
        changed = time.monotonic()
        await load.wait_acked(clients * 5, changed, timeout=60, what="acks after the change")
        until = time.monotonic()
    gap, began = load.longest_gap(since, until)
    return (
        gap,
        load.longest_stall(since, until),
        f"{said}; the longest gap began at {began - since:+.1f} s",
    )


async def gaps(
    network: PrivateNetwork, root: Path, args: argparse.Namespace, report: Report
) -> None:
    """The longest gap between acks during planned step-downs and rolling restarts."""
    step_gaps: list[float] = []
    step_stalls: list[float] = []
    roll_gaps: list[float] = []
    roll_stalls: list[float] = []
    async with formed(network, root / "gaps", keep=args.keep) as (hosts, admin):
        history = History()

        async def step_down(since: float) -> str:
            answer = await admin.ok("cluster_step_down", store="_sys", timeout=15)
            return f"{answer['previous']} -> {answer['leader']} in {time.monotonic() - since:.2f} s"

        async def roll(since: float) -> str:
            steps = []
            for index in FIRST:
                status = await cluster_status(admin)
                roles = [
                    role
                    for role, holder in (
                        ("writer leader", status.get("leader")),
                        ("log stream leader", (status.get("log") or {}).get("leader")),
                    )
                    if holder in (f"node{index}", f"esdb-node{index}")
                ]
                began = time.monotonic()
                code = await asyncio.to_thread(hosts.stop, index)
                stopped = time.monotonic()
                await asyncio.to_thread(hosts.start, index, FIRST)
                steps.append(
                    f"node{index} ({', '.join(roles) or 'follower'}) SIGTERM at "
                    f"{began - since:+.1f} s, exit {code} at {stopped - since:+.1f} s, ready at "
                    f"{time.monotonic() - since:+.1f} s"
                )
            return "; ".join(steps)

        for run in range(1, args.step_downs + 1):
            gap, stall, said = await gap_during(hosts, args.clients, step_down, history)
            step_gaps.append(gap)
            step_stalls.append(stall)
            note(
                f"step-down {run}: {said}; longest gap {gap:.3f} s, "
                f"longest client wait {stall:.3f} s"
            )
            await settle(admin, FIRST)
        for run in range(1, args.rolls + 1):
            gap, stall, said = await gap_during(hosts, args.clients, roll, history)
            roll_gaps.append(gap)
            roll_stalls.append(stall)
            note(
                f"rolling restart {run}: {said}; longest gap {gap:.3f} s, "
                f"longest client wait {stall:.3f} s"
            )
            await settle(admin, FIRST)
        await check_history(admin, hosts, history, FIRST)
    load = f"3 nodes, {args.clients} clients spread over them, 1 event per append"
    report.add(
        "longest gap between acks, planned step-down",
        summary(step_gaps),
        f"{load}, {args.step_downs} step-downs",
    )
    report.add("longest one client waited, planned step-down", summary(step_stalls), "same runs")
    report.add(
        "longest gap between acks, rolling restart of every node",
        summary(roll_gaps),
        f"{load}, {args.rolls} rolls (SIGTERM, then the same command; next node once ready)",
    )
    report.add("longest one client waited, rolling restart", summary(roll_stalls), "same runs")


@dataclass
class Rate:
    """One closed-loop measurement."""

    appends_s: float
    p50_ms: float
    p99_ms: float


async def measure_rate(
    hosts: HostCluster, nodes: tuple[int, ...], args: argparse.Namespace, history: History
) -> Rate:
    """Appends/s over `--window` seconds of closed-loop load from clients spread over `nodes`."""
    async with loaded(hosts, args.throughput_clients, nodes, history):
        begin = time.monotonic()
        await _window_lasts(args.window)
        end = time.monotonic()
    done = [a for a in history.acked if begin <= a.acked_at <= end]
    latencies = sorted((a.acked_at - a.sent_at) * 1000 for a in done)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    return Rate(len(done) / (end - begin), statistics.median(latencies) if latencies else 0.0, p99)


async def _window_lasts(seconds: float) -> None:
    """The measuring window: a length of time, not a wait for some state."""
    await asyncio.sleep(seconds)


async def wait_log_replicas(api: Api, count: int) -> None:
    """Wait until the log has `count` replicas, every one current."""

    async def current() -> bool:
        log = (await cluster_status(api)).get("log") or {}
        replicas = log.get("replicas") or []
        return (
            bool(log.get("leader"))
            and len(replicas) == count - 1
            and all(r.get("current") and not r.get("offline") for r in replicas)
        )

    await wait_until(current, timeout=SETTLE_TIMEOUT_S, what=f"{count} current log replicas")


async def throughput(
    network: PrivateNetwork, root: Path, args: argparse.Namespace, report: Report
) -> None:
    """Closed-loop appends/s on three nodes, then five (R3, then R5)."""
    results: dict[str, list[Rate]] = {}
    async with formed(network, root / "throughput", keep=args.keep) as (hosts, admin):
        history = History()

        async def rounds(label: str, nodes: tuple[int, ...]) -> None:
            for run in range(1, args.throughput_rounds + 1):
                rate = await measure_rate(hosts, nodes, args, history)
                results.setdefault(label, []).append(rate)
                note(
                    f"{label} round {run}: {rate.appends_s:,.0f} appends/s, "
                    f"p50 {rate.p50_ms:.1f} ms, p99 {rate.p99_ms:.1f} ms"
                )
                await settle(admin, nodes)

        await rounds("3 nodes, log R3", FIRST)
        for index in (4, 5):
            await asyncio.to_thread(hosts.start, index, (1,))
        five = (*FIRST, 4, 5)
        await settle(admin, five)
        await rounds("5 nodes, log R3", five)
        await admin.ok("cluster_replicas", {"replicas": 5}, store="_sys", timeout=30)
        await wait_log_replicas(admin, 5)
        await rounds("5 nodes, log R5", five)
        await check_history(admin, hosts, history, five)
    shape = (
        f"{args.throughput_clients} clients spread over the nodes, 1 event per append with an "
        f"expected version, closed loop, {args.window:.0f} s windows"
    )
    for label, rates in results.items():
        every = ", ".join(f"{r.appends_s:,.0f}" for r in rates)
        report.add(
            f"appends/s, {label}",
            f"median {statistics.median(r.appends_s for r in rates):,.0f} ({every}); "
            f"p50 {statistics.median(r.p50_ms for r in rates):.1f} ms, "
            f"p99 {statistics.median(r.p99_ms for r in rates):.1f} ms",
            shape,
        )


FIGURES = {"failover": failover, "join": join, "gaps": gaps, "throughput": throughput}


async def run(
    network: PrivateNetwork, root: Path, args: argparse.Namespace, report: Report
) -> None:
    """Measure each chosen figure, each on a cluster of its own."""
    for name in args.what:
        note(f"--- {name}")
        await FIGURES[name](network, root, args, report)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.system.multi_host_figures",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--what",
        action="append",
        default=[],
        help=f"figures to measure, comma-separated or repeated: {', '.join(WHAT)}, all (default)",
    )
    parser.add_argument(
        "--clients", type=int, default=12, help="load clients for failover and gaps"
    )
    parser.add_argument("--failover-runs", type=int, default=5)
    parser.add_argument("--join-events", type=int, default=1_000_000)
    parser.add_argument(
        "--fill-batch", type=int, default=1000, help="events per append of the fill"
    )
    parser.add_argument("--fill-in-flight", type=int, default=8, help="fill appends at once")
    parser.add_argument(
        "--image-every",
        default="100,0",
        help="ESDB_IMAGE_EVERY_ENTRIES of the join's cluster, comma-separated for one join "
        "each (0: the default setting); default 100,0",
    )
    parser.add_argument("--step-downs", type=int, default=5)
    parser.add_argument("--rolls", type=int, default=2, help="rolling restarts of every node")
    parser.add_argument("--throughput-clients", type=int, default=32)
    parser.add_argument("--throughput-rounds", type=int, default=2, help="windows per cluster size")
    parser.add_argument("--window", type=float, default=15.0, help="seconds per throughput window")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep each cluster's data and logs")
    args = parser.parse_args(argv)
    chosen = [w.strip() for arg in args.what or ["all"] for w in arg.split(",") if w.strip()]
    if "all" in chosen:
        chosen = list(WHAT)
    if unknown := set(chosen) - set(WHAT):
        parser.error(f"no such figure: {', '.join(sorted(unknown))}")
    args.what = [w for w in WHAT if w in chosen]
    try:
        args.image_every = [int(v) for v in args.image_every.split(",")]
    except ValueError:
        parser.error(f"--image-every takes numbers: {args.image_every}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure the chosen figures and print them with the command; 0 when all were measured."""
    args = parse(argv)
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="esdb-figures-"))
    command = "python -m tests.system.multi_host_figures " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    report = Report()
    print(
        f"{command}\nfsync durability; {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()}; data in {root}",
        flush=True,
    )
    try:
        with private_network(nodes=HOSTS) as network:
            asyncio.run(run(network, root, args, report))
    except NetnsUnavailable as e:
        print(f"multi_host_figures: cannot run here: {e}", file=sys.stderr)
        return 2
    finally:
        print(
            f"\n{command}\nload average at the end {os.getloadavg()}\n{report.table()}", flush=True
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
