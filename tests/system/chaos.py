"""A long randomized fault run on a three-node stack, for developers and operators:

    python -m tests.system.chaos --rounds 20 [--seed N] [--data-dir DIR] [--netns]

Each round runs concurrent appends with expected versions while one random fault strikes
(kill -9 the leader's or a follower's writer, a reader, a nats-server; wipe a follower's
data; freeze the leader's writer until another node leads, or a nats-server for seconds;
with `--netns`, also cut a node off the network for seconds),
waits for the cluster to converge, and checks the whole history: every acknowledged event
exactly once at its acknowledged position on every node, gapless stream versions, identical
replicas. It stops at the first violation and prints the seed to replay."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.stack import Api, Stack, connect_api, start_stack, wait_until
from tests.system.cluster import (
    NODES,
    cluster_status,
    crash,
    leader_index,
    load_with_fault,
    node_dir,
    verify_replicas,
    wait_converged,
)
from tests.system.history import History
from tests.system.netns import NetnsUnavailable, PrivateNetwork, private_network
from tests.system.netns_stack import start_netns_stack

Fault = Callable[[Stack, Api, random.Random], Awaitable[str]]


async def _kill_writer(stack: Stack, api: Api, rng: random.Random, *, leader: bool) -> str:
    current = await leader_index(api)
    node = current if leader else rng.choice([n for n in NODES if n != current])
    await crash(stack, "writer", node)
    return f"kill -9 {'leader' if leader else 'follower'} writer on node{node}"


async def kill_leader_writer(stack: Stack, api: Api, rng: random.Random) -> str:
    """kill -9 the writer that holds the lease."""
    return await _kill_writer(stack, api, rng, leader=True)


async def kill_follower_writer(stack: Stack, api: Api, rng: random.Random) -> str:
    """kill -9 a follower's writer."""
    return await _kill_writer(stack, api, rng, leader=False)


async def kill_nats_server(stack: Stack, api: Api, rng: random.Random) -> str:
    """kill -9 a random node's nats-server."""
    node = rng.choice(NODES)
    await crash(stack, "nats-server", node)
    return f"kill -9 nats-server on node{node}"


async def kill_reader(stack: Stack, api: Api, rng: random.Random) -> str:
    """kill -9 a random node's reader."""
    node = rng.choice(NODES)
    await crash(stack, "reader", node)
    return f"kill -9 reader on node{node}"


async def wipe_follower(stack: Stack, api: Api, rng: random.Random) -> str:
    """Delete a follower's data directory and restart its writer and reader."""
    current = await leader_index(api)
    node = rng.choice([n for n in NODES if n != current])
    shutil.rmtree(node_dir(stack, node), ignore_errors=True)
    for service in ("writer", "reader"):
        await crash(stack, service, node)
    return f"wipe node{node}"


async def freeze_leader_writer(stack: Stack, api: Api, rng: random.Random) -> str:
    """SIGSTOP the leader's writer until another node leads, then let it run on: it wakes
    with writes in hand and a lease it no longer holds (a GC pause, a stalled VM)."""
    frozen = await leader_index(api)
    pid = stack.pid("writer", frozen)
    os.kill(pid, signal.SIGSTOP)
    try:

        async def another_leads() -> bool:
            status = await cluster_status(api)
            return status.get("leader") not in (None, f"node{frozen}")

        await wait_until(another_leads, timeout=60, what="a leader other than the frozen one")
    finally:
        os.kill(pid, signal.SIGCONT)
    return f"freeze the leader writer on node{frozen} until node failover"


async def freeze_nats_server(stack: Stack, api: Api, rng: random.Random) -> str:
    """SIGSTOP a random node's nats-server for a few seconds (a stalled host or network)."""
    node = rng.choice(NODES)
    pid = stack.pid("nats-server", node)
    seconds = rng.uniform(1.0, 6.0)
    os.kill(pid, signal.SIGSTOP)
    try:
        await _fault_lasts(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
    return f"freeze nats-server on node{node} for {seconds:.1f} s"


def partition_node(network: PrivateNetwork) -> Fault:
    """Cut a random node off the others (and off the clients) for a few seconds, then heal:
    a leader cut off loses its lease and the majority elects another."""

    async def partition(stack: Stack, api: Api, rng: random.Random) -> str:
        node = rng.choice(NODES)
        seconds = rng.uniform(3.0, 10.0)
        role = "the leader" if node == await leader_index(api) else "a follower"
        network.cut(node)
        try:
            await _fault_lasts(seconds)
        finally:
            network.heal(node)
        return f"partition node{node} ({role}) for {seconds:.1f} s"

    return partition


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
    any), checking the history after each; with a `network`, node i runs in namespace i and
    partitions are among the faults."""
    rng = random.Random(seed)
    compacting = {"ESDB_IMAGE_EVERY_ENTRIES": "200", "ESDB_LOG_RETAIN_ENTRIES": "50"}
    faults = FAULTS if network is None else (*FAULTS, partition_node(network))
    if only:
        faults = tuple(fault for fault in faults if fault.__name__ in only)
    if network is None:
        stack = start_stack(data_dir, nodes=3, env=compacting)
    else:
        hosts = tuple(link.address for link in network.nodes)
        netns = tuple(link.netns for link in network.nodes)
        stack = start_netns_stack(data_dir, hosts, netns, env=compacting)
    history = History()
    try:
        api = await connect_api(stack.url)
        for number in range(1, rounds + 1):
            fault = rng.choice(faults)
            done: list[str] = []

            async def strike(fault: Fault = fault, done: list[str] = done) -> None:
                done.append(await fault(stack, api, rng))

            started = time.monotonic()
            round_history = await load_with_fault(
                api, strike, workers=rng.randint(4, 12), appends=rng.randint(10, 30)
            )
            history.acked.extend(round_history.acked)
            history.failed_ids |= round_history.failed_ids
            history.retries += round_history.retries
            await wait_converged(api)
            verify_replicas(stack, history)
            print(
                f"round {number}/{rounds}: {done[0]}; {len(round_history.acked)} appends acked, "
                f"{round_history.retries} retried; verified in {time.monotonic() - started:.1f} s",
                flush=True,
            )
        await api.nc.close()
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the chaos rounds; 0 when every round verified."""
    parser = argparse.ArgumentParser(prog="python -m tests.system.chaos", description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument(
        "--netns",
        action="store_true",
        help="run each node in a network namespace of its own and add partitions (needs root)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="FAULT",
        help="strike only this fault (repeatable): "
        + ", ".join(fault.__name__ for fault in FAULTS)
        + ", partition (with --netns)",
    )
    args = parser.parse_args(argv)
    known = {fault.__name__ for fault in FAULTS} | ({"partition"} if args.netns else set())
    if unknown := set(args.only) - known:
        parser.error(f"no such fault here: {', '.join(sorted(unknown))}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="esdb-chaos-"))
    print(f"chaos: {args.rounds} rounds, seed {seed}, data in {data_dir}", flush=True)
    try:
        if args.netns:
            with private_network(nodes=len(NODES)) as network:
                asyncio.run(chaos(args.rounds, seed, data_dir, network, tuple(args.only)))
        else:
            asyncio.run(chaos(args.rounds, seed, data_dir, only=tuple(args.only)))
    except NetnsUnavailable as e:
        print(f"chaos: --netns cannot run here: {e}", file=sys.stderr)
        return 2
    except AssertionError as e:
        print(f"chaos: VIOLATION (replay with --seed {seed}): {e}", file=sys.stderr)
        return 1
    print("chaos: every round verified", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
