"""The floor of a replicated write path built like esdb's, measured beside JetStream R3.

`python -m esdb.benchmarks.write_floor [--events N] [--rounds R] [--clients C]` starts its own
three-node `esdb up` (for its nats-servers; esdb's services sit idle) and runs, beside it, the
least that any leader-over-JetStream design in Python must do per append:

- a leader process (nats-py) that takes each request, puts every request that arrived while
  the previous log entry was in flight into one entry, publishes it to an R3 file-stored
  stream, writes each event to LMDB (one `put`, no indexes) and replies;
- two follower processes, each applying the stream to LMDB through an ordered consumer.

No validation, expected versions, idempotency, indexes, headers, metrics, fan-out or failover
copies. The same bench clients as `esdb bench` (64 concurrent, one event per request) then drive
this floor and JetStream R3 publishes with expected-sequence fences, in alternating rounds,
and the CPU each process spent per event is printed. What the floor costs above JetStream
is what the design itself costs; what esdb costs above the floor (`esdb bench --nodes 3`) is
what its features and its code cost."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import lmdb
import msgspec
import nats
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig

from esdb.benchmarks.appends import (
    AppendPlan,
    Progress,
    drive,
    ensure_jetstream_stream,
    event_payload,
    jetstream_appends,
)
from esdb.benchmarks.stack import BenchStack, process_usage

FLOOR_STREAM = "BENCH_FLOOR"
FLOOR_LOG = "bench.floor.log"
FLOOR_APPEND = "bench.floor.append"
_MAP_SIZE = 1 << 32


def _lmdb(path: str) -> lmdb.Environment:
    # As esdb's stores: the replicated log is the source of truth, so no fsync here either.
    return lmdb.open(path, map_size=_MAP_SIZE, sync=False, metasync=False)


async def run_leader(url: str, data_dir: str) -> None:
    """Take appends, keep one log entry in flight, apply it, reply to each request."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(FLOOR_STREAM)
    await js.add_stream(
        StreamConfig(
            name=FLOOR_STREAM, subjects=[FLOOR_LOG], storage=StorageType.FILE, num_replicas=3
        )
    )
    env = _lmdb(data_dir)
    pending: list[tuple[str, bytes]] = []
    arrived = asyncio.Event()

    async def take(msg: Msg) -> None:
        pending.append((msg.reply, msg.data))
        arrived.set()

    await nc.subscribe(FLOOR_APPEND, cb=take)
    encode = msgspec.msgpack.Encoder().encode
    position = 0
    print("ready", flush=True)
    while True:
        await arrived.wait()
        arrived.clear()
        batch, pending = pending, []
        if not batch:
            continue
        await js.publish(FLOOR_LOG, encode([data for _, data in batch]))
        with env.begin(write=True) as txn:
            for _, data in batch:
                position += 1
                txn.put(position.to_bytes(8, "big"), data, append=True)
        for reply, _ in batch:
            await nc.publish(reply, b'{"position":%d}' % position)


async def run_follower(url: str, data_dir: str) -> None:
    """Apply each log entry to LMDB, one transaction per entry."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    env = _lmdb(data_dir)
    decode = msgspec.msgpack.Decoder(list[bytes]).decode
    position = 0

    async def apply(msg: Msg) -> None:
        nonlocal position
        with env.begin(write=True) as txn:
            for data in decode(msg.data):
                position += 1
                txn.put(position.to_bytes(8, "big"), data, append=True)

    deadline = time.monotonic() + 30
    while True:
        try:
            await js.subscribe(FLOOR_LOG, stream=FLOOR_STREAM, ordered_consumer=True, cb=apply)
            break
        except nats.js.errors.NotFoundError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    print("ready", flush=True)
    await asyncio.Event().wait()


async def _spawn(role: str, url: str, data_dir: Path) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "esdb.benchmarks.write_floor",
        role,
        url,
        str(data_dir),
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if line.strip() != b"ready":
        raise RuntimeError(f"the floor's {role} did not start")
    return process


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    found = {name: process_usage(name, pid) for name, pid in pids.items()}
    return {name: usage.cpu_s for name, usage in found.items() if usage is not None}


async def compare(events: int, rounds: int, clients: int) -> None:
    """Run the floor and JetStream R3 in alternating rounds and print both."""
    stack = await BenchStack.start("fsync", None, nodes=3)
    scratch = Path(tempfile.mkdtemp(prefix="esdb-floor-"))
    roles: list[asyncio.subprocess.Process] = []
    try:
        urls = stack.urls
        roles.append(await _spawn("leader", urls[0], scratch / "leader"))
        roles.append(await _spawn("follower", urls[1], scratch / "follower1"))
        roles.append(await _spawn("follower", urls[2], scratch / "follower2"))
        nc = await nats.connect(urls[1])
        js = nc.jetstream()
        await ensure_jetstream_stream(js, "fsync", replicas=3)
        payload = event_payload()
        pids = {"bench client": os.getpid()}
        names = ("leader", "follower1", "follower2")
        pids |= {name: p.pid for name, p in zip(names, roles, strict=True)}
        assert stack.data_dir is not None
        for pid_file in sorted((stack.data_dir / "run").glob("nats-server-*.pid")):
            pids[pid_file.stem] = int(pid_file.read_text())

        async def floor_once(client: int, stream_no: int, fence: int | None) -> tuple[int, int]:
            await nc.request(FLOOR_APPEND, payload, timeout=10)
            return 0, 1

        rates: dict[str, list[float]] = {"floor": [], "jetstream": []}
        print(f"{events:,} one-event appends per path and round, {clients} clients, fsync, R3")
        for round_no in range(1, rounds + 1):
            for path in rates:
                plan = AppendPlan(uuid.uuid4().hex[:8], path, events, clients, 100, 10.0)
                before = _cpu(pids)
                started = time.perf_counter()
                if path == "floor":
                    run = await drive(plan, floor_once, Progress(path, events))
                else:
                    run = await jetstream_appends(js, plan, payload, Progress(path, events))
                wall = time.perf_counter() - started
                rate = events / wall
                after = _cpu(pids)
                rates[path].append(rate)
                per_event = {n: 1e6 * (after[n] - before[n]) / events for n in after}
                servers = sum(us for n, us in per_event.items() if n.startswith("nats-server"))
                others = "  ".join(
                    f"{n} {us:.0f}" for n, us in per_event.items() if not n.startswith("nats")
                )
                print(
                    f"round {round_no} {path:<9} {rate:>7,.0f} events/s  p50 "
                    f"{run.log.figures(path, wall).p50_ms:.1f} ms  cpu µs/event: {others}  "
                    f"nats-servers {servers:.0f}"
                )
        floor, jetstream = (statistics.median(rates[p]) for p in ("floor", "jetstream"))
        print(f"floor / jetstream events/s (ratio of medians): {floor / jetstream:.2f}x")
        await nc.close()
    finally:
        for process in roles:
            process.kill()
            await process.wait()
        await stack.stop()


def main() -> None:
    """Compare the floor with JetStream, or run one of its roles (`leader|follower URL DIR`)."""
    if len(sys.argv) == 4 and sys.argv[1] in ("leader", "follower"):
        role = run_leader if sys.argv[1] == "leader" else run_follower
        asyncio.run(role(sys.argv[2], sys.argv[3]))
        return
    parser = argparse.ArgumentParser(prog="python -m esdb.benchmarks.write_floor")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(compare(args.events, args.rounds, args.clients))


if __name__ == "__main__":
    main()
