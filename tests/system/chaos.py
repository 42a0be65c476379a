"""A long randomized fault run on a cluster, for developers and operators:

    python -m tests.system.chaos --rounds 20 [--seed N] [--data-dir DIR] [--netns] [--only F]

Each round runs concurrent appends with expected versions while one random fault strikes
(kill -9 the leader's or a follower's writer, a reader, a nats-server; wipe a follower's
data; freeze the leader's writer until another node leads, or a nats-server for seconds),
waits for the cluster to converge, and checks the whole history on every live node's LMDB
files: every acknowledged event exactly once at its acknowledged position, gapless stream
versions, identical replicas. It stops at the first violation and prints the seed to replay.

Without `--netns` the cluster is one `esdb up --nodes 3`. With `--netns` (as root) it is a
cluster across hosts (`tests/system/hosts.py`): five network namespaces on a bridge, three
running a node each, started with the per-host command only (`esdb up --node-id --host
--join`), two spare. The faults above strike there too, and these join them:
- `partition`: cut a node off the network for seconds, then heal;
- `host_kill`: kill -9 every process of one host, nats-server included, then start it again
  with the per-host command: it must catch up;
- `join`: a new node (a new id) joins on a spare host, naming one member;
- `remove`: SIGTERM a node, then `_sys.cluster_remove` it; its host is spare again, for a new
  node id with a fresh data directory (a removed id is refused for good).
Membership stays between three and five nodes, so the cluster keeps its quorum: a join with
no spare host removes a node first, and a removal from three nodes joins one first."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import nats.errors

from tests.stack import Api, Stack, StackFailed, connect_api, start_stack, wait_until
from tests.system.cluster import (
    NODES,
    cluster_status,
    crash,
    leader_index,
    load_with_fault,
    node_dir,
    replica_events,
    verify_replica_events,
    wait_converged,
)
from tests.system.history import RETRYABLE, History
from tests.system.hosts import HostCluster
from tests.system.netns import NetnsUnavailable, PrivateNetwork, private_network

HOSTS = 5
"""Hosts (namespaces) of `--netns`; the first three form the cluster, the others are spare."""
MIN_MEMBERS = 3
"""The fewest nodes: a three-replica log needs three servers, two of them to keep its quorum
while a fault strikes the third."""
REMOVE_TIMEOUT_S = 60.0


class Cluster(Protocol):
    """What the faults strike: the live nodes by number (`node<n>`), the `esdb up` that
    supervises each, and where each keeps its stores."""

    def nodes(self) -> tuple[int, ...]: ...

    def stack(self, node: int) -> Stack: ...

    def node_dir(self, node: int) -> Path: ...

    def replicas(self) -> dict[int, list[tuple[Any, ...]]]: ...

    def stop(self) -> None: ...


@dataclass
class OneStack:
    """`esdb up --nodes 3`: one supervisor runs every node on this machine."""

    running: Stack

    def nodes(self) -> tuple[int, ...]:
        return NODES

    def stack(self, node: int) -> Stack:
        return self.running

    def node_dir(self, node: int) -> Path:
        return node_dir(self.running, node)

    def replicas(self) -> dict[int, list[tuple[Any, ...]]]:
        return {node: replica_events(self.running, node) for node in NODES}

    def stop(self) -> None:
        self.running.stop()


@dataclass
class PerHost:
    """One `esdb up --node-id --host --join` per host; a host that runs no node is spare.
    Node numbers are never reused: a removed id is refused for good."""

    hosts: HostCluster
    next_node: int = MIN_MEMBERS + 1

    def form(self) -> None:
        """Start nodes 1-3 on hosts 1-3, each naming the three, and wait until all are ready."""
        first = tuple(range(1, MIN_MEMBERS + 1))
        for index in first:
            self.hosts.spawn(index, first)
        for index in first:
            self.hosts.running[index].wait_ready(self.hosts.node_id(index))

    def host_of(self, node: int) -> int:
        """The host that runs `node<node>`."""
        return next(i for i in self.hosts.running if self.hosts.node_id(i) == f"node{node}")

    def nodes(self) -> tuple[int, ...]:
        return tuple(
            sorted(int(self.hosts.node_id(i).removeprefix("node")) for i in self.hosts.running)
        )

    def spare(self) -> list[int]:
        """Hosts that run no node."""
        return [
            i for i in range(1, len(self.hosts.network.nodes) + 1) if i not in self.hosts.running
        ]

    def stack(self, node: int) -> Stack:
        return self.hosts.running[self.host_of(node)]

    def node_dir(self, node: int) -> Path:
        return self.hosts.data_dir(self.host_of(node)) / f"node{node}"

    def replicas(self) -> dict[int, list[tuple[Any, ...]]]:
        return {node: self.hosts.replica(self.host_of(node)) for node in self.nodes()}

    def stop(self) -> None:
        self.hosts.stop_all()


Fault = Callable[[Cluster, Api, random.Random], Awaitable[str]]


async def _role(api: Api, node: int) -> str:
    return "the leader" if node == await leader_index(api) else "a follower"


async def _kill_writer(cluster: Cluster, api: Api, rng: random.Random, *, leader: bool) -> str:
    current = await leader_index(api)
    node = current if leader else rng.choice([n for n in cluster.nodes() if n != current])
    await crash(cluster.stack(node), "writer", node)
    return f"kill -9 {'leader' if leader else 'follower'} writer on node{node}"


async def kill_leader_writer(cluster: Cluster, api: Api, rng: random.Random) -> str:
    """kill -9 the writer that holds the lease."""
    return await _kill_writer(cluster, api, rng, leader=True)


async def kill_follower_writer(cluster: Cluster, api: Api, rng: random.Random) -> str:
    """kill -9 a follower's writer."""
    return await _kill_writer(cluster, api, rng, leader=False)


async def kill_nats_server(cluster: Cluster, api: Api, rng: random.Random) -> str:
    """kill -9 a random node's nats-server."""
    node = rng.choice(cluster.nodes())
    await crash(cluster.stack(node), "nats-server", node)
    return f"kill -9 nats-server on node{node}"


async def kill_reader(cluster: Cluster, api: Api, rng: random.Random) -> str:
    """kill -9 a random node's reader."""
    node = rng.choice(cluster.nodes())
    await crash(cluster.stack(node), "reader", node)
    return f"kill -9 reader on node{node}"


async def wipe_follower(cluster: Cluster, api: Api, rng: random.Random) -> str:
    """Delete a follower's data directory and restart its writer and reader."""
    current = await leader_index(api)
    node = rng.choice([n for n in cluster.nodes() if n != current])
    shutil.rmtree(cluster.node_dir(node), ignore_errors=True)
    for service in ("writer", "reader"):
        await crash(cluster.stack(node), service, node)
    return f"wipe node{node}"


async def freeze_leader_writer(cluster: Cluster, api: Api, rng: random.Random) -> str:
    """SIGSTOP the leader's writer until another node leads, then let it run on: it wakes
    with writes in hand and a lease it no longer holds (a GC pause, a stalled VM)."""
    frozen = await leader_index(api)
    pid = cluster.stack(frozen).pid("writer", frozen)
    os.kill(pid, signal.SIGSTOP)
    try:

        async def another_leads() -> bool:
            status = await cluster_status(api)
            return status.get("leader") not in (None, f"node{frozen}")

        await wait_until(another_leads, timeout=60, what="a leader other than the frozen one")
    finally:
        os.kill(pid, signal.SIGCONT)
    return f"freeze the leader writer on node{frozen} until node failover"


async def freeze_nats_server(cluster: Cluster, api: Api, rng: random.Random) -> str:
    """SIGSTOP a random node's nats-server for a few seconds (a stalled host or network)."""
    node = rng.choice(cluster.nodes())
    pid = cluster.stack(node).pid("nats-server", node)
    seconds = rng.uniform(1.0, 6.0)
    os.kill(pid, signal.SIGSTOP)
    try:
        await _fault_lasts(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
    return f"freeze nats-server on node{node} for {seconds:.1f} s"


def host_faults(cluster: PerHost) -> tuple[Fault, ...]:
    """The faults of a cluster across hosts: partitions, whole-host kills, joins, removals."""

    async def partition(_: Cluster, api: Api, rng: random.Random) -> str:
        """Cut a random node off the others (and off the clients) for a few seconds, then
        heal: a leader cut off loses its lease and the majority elects another."""
        node = rng.choice(cluster.nodes())
        host = cluster.host_of(node)
        seconds = rng.uniform(3.0, 10.0)
        role = await _role(api, node)
        cluster.hosts.network.cut(host)
        try:
            await _fault_lasts(seconds)
        finally:
            cluster.hosts.network.heal(host)
        return f"partition node{node} ({role}) for {seconds:.1f} s"

    async def host_kill(_: Cluster, api: Api, rng: random.Random) -> str:
        """kill -9 every process of a random node's host, as a power cut would; after a few
        seconds start it again with the per-host command, and wait until it caught up."""
        node = rng.choice(cluster.nodes())
        host = cluster.host_of(node)
        role = await _role(api, node)
        killed = await asyncio.to_thread(cluster.hosts.kill_host, host)
        seconds = rng.uniform(1.0, 5.0)
        await _fault_lasts(seconds)
        started = time.monotonic()
        members = tuple(sorted({*cluster.hosts.running, host}))
        await asyncio.to_thread(cluster.hosts.start, host, members)
        return (
            f"kill -9 host{host} (node{node}, {role}; {killed} processes) for {seconds:.1f} s, "
            f"ready again in {time.monotonic() - started:.1f} s"
        )

    async def join(_: Cluster, api: Api, rng: random.Random) -> str:
        """A new node joins on a spare host (removing a node first if none is spare)."""
        before = "" if cluster.spare() else await _remove(api, rng) + ", then "
        return before + await _join(rng)

    async def remove(_: Cluster, api: Api, rng: random.Random) -> str:
        """Stop a random node and remove it (joining one first if only three are left)."""
        before = await _join(rng) + ", then " if len(cluster.nodes()) <= MIN_MEMBERS else ""
        return before + await _remove(api, rng)

    async def _join(rng: random.Random) -> str:
        host = rng.choice(cluster.spare())
        node_id = f"node{cluster.next_node}"
        cluster.next_node += 1
        via = rng.choice(sorted(cluster.hosts.running))
        started = time.monotonic()
        await asyncio.to_thread(cluster.hosts.start, host, (via,), node_id=node_id)
        return (
            f"{node_id} joins on host{host} naming host{via}, "
            f"ready in {time.monotonic() - started:.1f} s"
        )

    async def _remove(api: Api, rng: random.Random) -> str:
        node = rng.choice(cluster.nodes())
        host = cluster.host_of(node)
        role = await _role(api, node)
        started = time.monotonic()
        code = await asyncio.to_thread(cluster.hosts.stop, host)
        assert code == 0, f"node{node} exited with {code} on SIGTERM"
        stopped = time.monotonic()
        removed = await _cluster_remove(api, f"node{node}")
        assert removed["server_removed"] is True, f"the server stayed a JetStream peer: {removed}"
        return (
            f"remove node{node} ({role}) from host{host}, now spare: stopped in "
            f"{stopped - started:.1f} s, removed in {time.monotonic() - stopped:.1f} s"
        )

    return partition, host_kill, join, remove


async def _cluster_remove(api: Api, node: str) -> dict[str, Any]:
    """`_sys.cluster_remove`, asked again while JetStream is busy (a stream electing a leader
    after the node left) or the client reconnects."""
    answers: list[dict[str, Any]] = []

    async def removed() -> bool:
        try:
            answer = await api.call("cluster_remove", {"node": node}, store="_sys", timeout=30)
        except nats.errors.Error:
            return False
        error = answer.get("error")
        assert error is None or error["code"] in RETRYABLE, f"cluster_remove {node}: {error}"
        answers.append(answer)
        return error is None

    await wait_until(removed, timeout=REMOVE_TIMEOUT_S, what=f"{node} to be removed")
    return answers[-1]


HOST_FAULTS = ("partition", "host_kill", "join", "remove")
"""The faults `--netns` adds (see `host_faults`)."""


async def _fault_lasts(seconds: float) -> None:
    """Let a fault go on for `seconds`: its length, not a wait for some state."""
    await asyncio.sleep(seconds)


FAULTS: tuple[Fault, ...] = (
    kill_leader_writer,
    kill_follower_writer,
    kill_nats_server,
    kill_reader,
    wipe_follower,
    freeze_leader_writer,
    freeze_nats_server,
)


async def chaos(
    rounds: int,
    seed: int,
    data_dir: Path,
    network: PrivateNetwork | None = None,
    only: tuple[str, ...] = (),
) -> None:
    """Run `rounds` rounds of load plus one random fault each (of those named in `only`, if
    any), checking the history after each; with a `network`, each node runs on a host of its
    own (see the module's docstring) and the host faults join in."""
    rng = random.Random(seed)
    compacting = {"ESDB_IMAGE_EVERY_ENTRIES": "200", "ESDB_LOG_RETAIN_ENTRIES": "50"}
    cluster: Cluster
    if network is None:
        cluster = OneStack(start_stack(data_dir, nodes=3, env=compacting))
        faults = FAULTS
        url = cluster.running.url
    else:
        per_host = PerHost(HostCluster(network, data_dir, env=compacting))
        cluster = per_host
        faults = (*FAULTS, *host_faults(per_host))
        url = per_host.hosts.url(*range(1, len(network.nodes) + 1))
        try:
            await asyncio.to_thread(per_host.form)
        except BaseException:
            cluster.stop()
            raise
    if only:
        faults = tuple(fault for fault in faults if fault.__name__ in only)
    history = History()
    took: dict[str, list[float]] = defaultdict(list)
    try:
        api = await connect_api(url)
        for number in range(1, rounds + 1):
            fault = rng.choice(faults)
            done: list[str] = []

            async def strike(fault: Fault = fault, done: list[str] = done) -> None:
                done.append(await fault(cluster, api, rng))

            started = time.monotonic()
            round_history = await load_with_fault(
                api,
                strike,
                workers=rng.randint(4, 12),
                appends=rng.randint(10, 30),
                through_fault=True,
            )
            history.acked.extend(round_history.acked)
            history.failed_ids |= round_history.failed_ids
            history.retries += round_history.retries
            nodes = cluster.nodes()
            await wait_converged(api, nodes)
            verify_replica_events(cluster.replicas(), history)
            took[fault.__name__].append(time.monotonic() - started)
            print(
                f"round {number}/{rounds}: {done[0]}; {len(round_history.acked)} appends acked, "
                f"{round_history.retries} retried; nodes {', '.join(map(str, nodes))} verified "
                f"in {took[fault.__name__][-1]:.1f} s",
                flush=True,
            )
        await api.nc.close()
    finally:
        cluster.stop()
    for name, times in sorted(took.items()):
        print(
            f"chaos: {name}: {len(times)} rounds, median {statistics.median(times):.1f} s, "
            f"longest {max(times):.1f} s",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the chaos rounds; 0 when every round verified."""
    parser = argparse.ArgumentParser(prog="python -m tests.system.chaos", description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument(
        "--netns",
        action="store_true",
        help="a cluster across hosts: each node its own `esdb up --node-id --host --join` in "
        "a network namespace, with spare hosts; adds partition, host_kill, join and remove "
        "(needs root)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="FAULT",
        help="strike only this fault (repeatable): "
        + ", ".join(fault.__name__ for fault in FAULTS)
        + ", and with --netns "
        + ", ".join(HOST_FAULTS),
    )
    args = parser.parse_args(argv)
    known = {fault.__name__ for fault in FAULTS} | (set(HOST_FAULTS) if args.netns else set())
    if unknown := set(args.only) - known:
        parser.error(f"no such fault here: {', '.join(sorted(unknown))}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="esdb-chaos-"))
    print(f"chaos: {args.rounds} rounds, seed {seed}, data in {data_dir}", flush=True)
    try:
        if args.netns:
            with private_network(nodes=HOSTS) as network:
                asyncio.run(chaos(args.rounds, seed, data_dir, network, tuple(args.only)))
        else:
            asyncio.run(chaos(args.rounds, seed, data_dir, only=tuple(args.only)))
    except NetnsUnavailable as e:
        print(f"chaos: --netns cannot run here: {e}", file=sys.stderr)
        return 2
    except AssertionError as e:
        print(f"chaos: VIOLATION (replay with --seed {seed}): {e}", file=sys.stderr)
        return 1
    except StackFailed as e:
        print(f"chaos: a node did not start (replay with --seed {seed}): {e}", file=sys.stderr)
        return 1
    print("chaos: every round verified", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
