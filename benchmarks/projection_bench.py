"""What projections cost and how fast they go (issue 15's "Measure and report").

`python -m esdb.benchmarks.projection_bench [--runtime-events N] [--events N]
[--load-seconds S] [--rounds R] [--fixed-rate R] [--durability MODE]
[--parts runtime,backfill,lag,cost,fixed]`

1. **runtime** (no NATS, no disk): a counting query and a `linkTo` query over
   `--runtime-events` (1,000,000) generated events, through what a runner does per batch of
   1,000: select, build the batch's JSON, run it in the isolate, and (for `linkTo`) turn the
   emits into appends with their ids. CPU time of this process (V8's thread included).
2. **backfill** (its own `esdb up`): `--events` (100,000) events appended first (100 per
   append), then a counting projection and a `linkTo` projection created from `start`; each
   is timed from its creation until it has processed every event (wall), with the projection
   service's CPU time over that span. Commits go through the log, so this is end to end.
3. **lag**: the closed-loop maximum append rate (32 clients, one event per append), then
   appends open-loop at 50 % of it for `--load-seconds` with a counting projection running;
   its `lag` (positions behind the store's last) is sampled every 100 ms.
4. **append cost**: closed-loop appends/s (5,000 appends, 32 clients) and the writer's CPU
   per append, with no projection running and with one counting projection running
   (`fromAll`), in alternating order, `--rounds` (3) times each; medians.
5. **fixed**: the CPU time of the writer and of the projection service while appends come
   open-loop at `--fixed-rate` (2,000/s) for 10 s, without and then with a running counting
   projection: steadier on a shared machine than appends/s.

The machine is shared and noisy (2 cores): prefer the CPU figures, and the medians."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NatsClient

from esdb.benchmarks.appends import AppendPlan, Progress, esdb_appends, event_payload
from esdb.benchmarks.open_loop import OpenLoop, esdb_sender
from esdb.benchmarks.stack import BenchStack, process_usage
from esdb.client import Client, NewEvent
from esdb.services.projection.batches import batch_json, emitted_appends, selects
from esdb.services.projection.runtime import Isolate
from esdb.shared.storage.records import EventRecord

STORE = "default"
PARTS = ("runtime", "backfill", "lag", "cost", "fixed")
BATCH = 1000
COUNTING = """fromAll().when({
  $init: function () { return { count: 0 }; },
  $any: function (s, e) { s.count += 1; }
})"""
LINKING = """fromAll().when({
  $any: function (s, e) {
    var dash = e.streamId.indexOf("-");
    if (dash > 0) linkTo("ce-" + e.streamId.substring(0, dash), e);
  }
})"""
_json = msgspec.json.Encoder()


def _say(text: str) -> None:
    print(text, flush=True)


def generated(count: int) -> list[EventRecord]:
    """`count` events of 160-byte JSON bodies over streams of 100 in 10 categories."""
    body = event_payload()
    return [
        EventRecord(
            event_id=i.to_bytes(16, "big"),
            stream=f"cat{i % 10}-{i // 1000}",
            version=i % 100,
            position=i + 1,
            type="BenchEvent",
            data=body,
            metadata=b"",
            content_type="application/json",
            created_us=0,
        )
        for i in range(count)
    ]


def runtime_rate(query: str, events: list[EventRecord], *, emit: bool) -> tuple[float, int]:
    """Events per CPU second through select, batch JSON, the isolate and the emits' appends;
    and how many events were emitted."""
    isolate = Isolate.compile(query, emit_enabled=emit)
    emitted = 0
    try:
        started = time.process_time()
        for first in range(0, len(events), BATCH):
            wanted = [r for r in events[first : first + BATCH] if selects(isolate.shape, r)]
            outcome = isolate.process(batch_json(wanted))
            if outcome.emits:
                emitted += sum(
                    len(a.events) for a in emitted_appends("bench", 0, outcome.emits, wanted)
                )
        spent = time.process_time() - started
    finally:
        isolate.close()
    return len(events) / spent, emitted


async def fill(nc: NatsClient, count: int, *, per_append: int = 100, clients: int = 8) -> None:
    """Append `count` events, `per_append` to a request, from `clients` tasks."""
    subject = f"esdb.api.{STORE}.append"
    body = event_payload().decode()
    left = list(range(0, count, per_append))

    async def client(n: int) -> None:
        while left:
            first = left.pop()
            events = [
                {"type": "BenchEvent", "data": msgspec.json.decode(body)}
                for _ in range(min(per_append, count - first))
            ]
            request = {"stream": f"fill{n}-{first}", "expected_version": "any", "events": events}
            reply = msgspec.json.decode(await _ask(nc, subject, request))
            if "error" in reply:
                raise RuntimeError(f"fill append failed: {reply['error']}")

    await asyncio.gather(*(client(n) for n in range(clients)))


async def _ask(nc: NatsClient, subject: str, request: dict[str, Any]) -> bytes:
    reply = await nc.request(subject, _json.encode(request), timeout=30)
    return bytes(reply.data)


async def _until(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("the projection did not catch up in time")
        await asyncio.sleep(0.05)


async def backfill(client: Client, stack: BenchStack, name: str, query: str, emit: bool) -> None:
    """Time a projection from `start` over everything in the store."""
    last = (await client.read_all(from_position="end", direction="backward", limit=1)).events
    total = last[0].position if last else 0
    cpu = _cpu(stack, "projection-node1")
    started = time.perf_counter()
    await client.create_projection(name, query, emit_enabled=emit)

    async def done() -> bool:
        info = await client.projection_info(name)
        if info.status == "faulted":
            raise RuntimeError(f"{name} faulted: {info.reason}")
        return info.position >= total

    await _until(done, 1800)
    seconds = time.perf_counter() - started
    spent = _cpu(stack, "projection-node1") - cpu
    info = await client.projection_info(name)
    _say(
        f"backfill {name}: {total:,} positions in {seconds:.1f} s = {total / seconds:,.0f} "
        f"events/s wall; projection service CPU {spent:.1f} s = {total / spent:,.0f} events/CPU-s;"
        f" emitted {info.events_emitted:,}"
    )
    await client.disable_projection(name)


async def max_rate(nc: NatsClient, run_id: str, label: str, events: int = 5000) -> float:
    """Closed-loop appends/s: 32 clients, one event per append with expected versions."""
    plan = AppendPlan(run_id, label, events, 32, 100, 10.0)
    run = await esdb_appends(nc, STORE, plan, event_payload(), Progress(label, events))
    return run.log.events / run.seconds


async def lag_at_half_load(
    nc: NatsClient, client: Client, stack: BenchStack, run_id: str, seconds: float
) -> None:
    """Projection lag while appends run at 50 % of the closed-loop maximum."""
    top = await max_rate(nc, run_id, "probe")
    rate = top / 2
    name = f"lag-{run_id}"
    await client.create_projection(name, COUNTING, start="end")
    sender = OpenLoop(
        esdb_sender(nc, STORE, lambda i: f"load-{run_id}-{i % 64}", event_payload(), 10.0),
        rate,
        int(rate * seconds),
        "load",
    )
    lags: list[int] = []
    cpu = _cpu(stack, "projection-node1")
    loading = asyncio.create_task(sender.run())
    while not loading.done():
        lags.append((await client.projection_info(name)).lag)
        await asyncio.sleep(0.1)
    await loading
    spent = _cpu(stack, "projection-node1") - cpu
    lags.sort()
    sent = sender.figures()
    _say(
        f"lag at 50 % load: max append rate {top:,.0f}/s, offered {rate:,.0f}/s for "
        f"{seconds:.0f} s ({sent.appended:,} appended at {sent.sent_rate:,.0f}/s sent, "
        f"{sent.errors} failed {sent.error_codes}); lag in positions over "
        f"{len(lags)} samples: p50 {lags[len(lags) // 2]}, p99 {lags[int(len(lags) * 0.99)]}, "
        f"max {lags[-1]} (p50 {lags[len(lags) // 2] / rate * 1000:.0f} ms of appends); "
        f"projection service CPU {spent:.1f} s = {spent / max(1, sent.appended) * 1e6:.0f} µs "
        f"per appended event"
    )
    await client.disable_projection(name)


def _cpu(stack: BenchStack, name: str) -> float:
    pid = stack.pid(name)
    usage = None if pid is None else process_usage(name, pid)
    return 0.0 if usage is None else usage.cpu_s


async def append_cost(
    nc: NatsClient, client: Client, stack: BenchStack, run_id: str, rounds: int
) -> None:
    """Closed-loop appends/s, and the writer's CPU per append, without and with a running
    counting projection; the order alternates from round to round."""
    name = f"cost-{run_id}"
    await client.create_projection(name, COUNTING, start="end", enabled=False)
    rates: dict[bool, list[float]] = {False: [], True: []}
    writer_us: dict[bool, list[float]] = {False: [], True: []}
    projection_us: dict[bool, list[float]] = {False: [], True: []}
    for n in range(rounds):
        for running in (False, True) if n % 2 == 0 else (True, False):
            if running:
                await client.enable_projection(name)
            cpu = _cpu(stack, "writer-node1")
            beside = _cpu(stack, "projection-node1")
            rates[running].append(await max_rate(nc, run_id, f"{int(running)}{n}", 5000))
            writer_us[running].append((_cpu(stack, "writer-node1") - cpu) / 5000 * 1e6)
            projection_us[running].append((_cpu(stack, "projection-node1") - beside) / 5000 * 1e6)
            if running:
                await client.disable_projection(name)
        _say(
            f"round {n + 1}: {rates[False][-1]:,.0f} appends/s without "
            f"({writer_us[False][-1]:.0f} µs writer CPU each), {rates[True][-1]:,.0f} with "
            f"({writer_us[True][-1]:.0f} µs; projection service {projection_us[True][-1]:.0f} µs)"
        )
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    _say(
        f"append cost: median {off:,.0f} appends/s without a projection, {on:,.0f} with one "
        f"counting projection running ({(on - off) / off:+.1%}); writer CPU per append "
        f"{statistics.median(writer_us[False]):.0f} µs without, "
        f"{statistics.median(writer_us[True]):.0f} µs with, and the projection service "
        f"{statistics.median(projection_us[True]):.0f} µs per append beside it"
    )


async def cpu_at_fixed_rate(
    nc: NatsClient, client: Client, stack: BenchStack, run_id: str, rate: float, seconds: float
) -> None:
    """CPU of the writer and of the projection service while appends come open-loop at
    `rate`, without and then with a running counting projection."""
    name = f"fixed-{run_id}"
    await client.create_projection(name, COUNTING, start="end", enabled=False)
    for running in (False, True):
        if running:
            await client.enable_projection(name)
        writer, beside = _cpu(stack, "writer-node1"), _cpu(stack, "projection-node1")
        count = int(rate * seconds)
        sender = OpenLoop(
            esdb_sender(nc, STORE, lambda i: f"fixed-{run_id}-{i % 64}", event_payload(), 10.0),
            rate,
            count,
            "fixed",
        )
        await sender.run()
        writer = _cpu(stack, "writer-node1") - writer
        beside = _cpu(stack, "projection-node1") - beside
        _say(
            f"at {rate:,.0f} appends/s for {seconds:.0f} s, {'one' if running else 'no'} "
            f"projection running: writer CPU {writer:.2f} s ({writer / count * 1e6:.0f} µs per "
            f"append), projection service {beside:.2f} s ({beside / count * 1e6:.0f} µs)"
        )
    await client.disable_projection(name)


async def on_stack(args: argparse.Namespace) -> None:
    """Parts 2-4 on a stack of the benchmark's own."""
    stack = await BenchStack.start(args.durability, args.data_dir)
    try:
        nc = await nats.connect(stack.url)
        run_id = uuid.uuid4().hex[:6]
        async with Client.connect(stack.url) as client:
            await client.append(f"warm-{run_id}", [NewEvent("Warm", {})])
            if "backfill" in args.parts:
                _say(f"filling {args.events:,} events...")
                await fill(nc, args.events)
                await backfill(client, stack, f"count-{run_id}", COUNTING, False)
                await backfill(client, stack, f"link-{run_id}", LINKING, True)
            if "lag" in args.parts:
                await lag_at_half_load(nc, client, stack, run_id, args.load_seconds)
            if "cost" in args.parts:
                await append_cost(nc, client, stack, run_id, args.rounds)
            if "fixed" in args.parts:
                await cpu_at_fixed_rate(nc, client, stack, run_id, args.fixed_rate, 10.0)
        await nc.close()
    finally:
        await stack.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the parts and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime-events", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--load-seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--durability", default="fsync", choices=("fsync", "interval", "memory"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--fixed-rate", type=float, default=2000.0)
    parser.add_argument(
        "--parts",
        type=lambda text: set(text.split(",")),
        default=set(PARTS),
        help=f"comma-separated, of {','.join(PARTS)} (default: all)",
    )
    args = parser.parse_args(argv)
    if "runtime" in args.parts:
        events = generated(args.runtime_events)
        for label, query, emit in (("counting", COUNTING, False), ("linkTo", LINKING, True)):
            rate, emitted = runtime_rate(query, events, emit=emit)
            _say(
                f"runtime {label}: {len(events):,} events at {rate:,.0f} events/CPU-s "
                f"({1e6 / rate:.2f} µs/event), {emitted:,} emitted"
            )
    if args.parts - {"runtime"}:
        asyncio.run(on_stack(args))


if __name__ == "__main__":
    main()
