"""Export and import speed: `esdb export` of a store of N events, then `esdb import` of the file
into new stores, one request at a time (`--in-flight 1`, as import ran before it pipelined),
pipelined (the default), and as appends (`--renumber`, the path that kept versions by
appending).

    python -m esdb.benchmarks.backup_bench [--events 1000000] [--streams 1000] [--run 10]
        [--url URL] [--before CHECKOUT]

Without `--url` it starts its own `esdb up` (fsync durability) in a temporary directory. The
source store's events are interleaved over the streams (runs of `--run` events of a stream),
160-byte JSON bodies. Every command is a fresh `esdb` process: its wall time and CPU time
(user + system of the process, from `getrusage`) are printed with the events/s each reports."""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from esdb.benchmarks.appends import event_payload
from esdb.benchmarks.stack import BenchStack
from esdb.client import AppendSpec, Client, NewEvent

FILL_BATCH = 1000
FILL_IN_FLIGHT = 8


async def fill(client: Client, events: int, streams: int, run: int) -> float:
    """Append `events` events round-robin over `streams` streams, `run` at a time per stream;
    the seconds it took."""
    payload = event_payload()
    started = time.monotonic()
    pending: set[asyncio.Task[Any]] = set()
    written = 0
    stream = 0
    while written < events:
        specs: list[AppendSpec] = []
        in_request = 0
        seen: set[str] = set()
        while in_request < FILL_BATCH and written + in_request < events:
            name = f"item-{stream % streams}"
            if name in seen:
                break
            seen.add(name)
            count = min(run, events - written - in_request)
            specs.append(AppendSpec(name, [NewEvent("Ticked", payload) for _ in range(count)]))
            in_request += count
            stream += 1
        pending.add(asyncio.create_task(client.append_multi(specs)))
        written += in_request
        if len(pending) >= FILL_IN_FLIGHT:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
    for task in pending:
        await task
    return time.monotonic() - started


def _code_of(checkout: Path | None) -> list[str]:
    """How to run `esdb`: this one, or the one in another checkout (say, main's), put ahead
    of this editable install."""
    if checkout is None:
        return ["-m", "esdb.cli.main"]
    boot = (
        "import sys; sys.meta_path = [f for f in sys.meta_path if 'editable' not in "
        f"repr(f).lower()]; sys.path.insert(0, {str(checkout)!r}); "
        "from esdb.cli.main import main; sys.argv[0] = 'esdb'; sys.exit(main())"
    )
    return ["-c", boot]


def legacy_copy(exported: Path, out: Path) -> None:
    """The event and stream lines of an export: a format-1 file, as esdb read before it."""
    with open(exported, "rb") as source, open(out, "wb") as legacy:
        for line in source:
            if line.startswith(b'{"event_id"') or line.startswith(b'{"kind":"stream"'):
                legacy.write(line)


async def timed(*args: str, code: Path | None = None) -> tuple[dict[str, Any], float, float]:
    """Run `esdb ARGS --json`: its summary, wall seconds and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *_code_of(code),
        *args,
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise RuntimeError(f"esdb {' '.join(args)} failed: {err.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return summary, wall, cpu


async def bench(
    url: str, events: int, streams: int, run: int, work: Path, before: Path | None
) -> None:
    """Fill a store, export it, import it three ways; print one row per command."""
    source = f"bench{uuid.uuid4().hex[:8]}"
    async with Client.connect(url, store=source, timeout=60) as client:
        await client.create_store(source)
        seconds = await fill(client, events, streams, run)
        print(f"filled {events:,} events over {streams:,} streams in {seconds:.1f} s")
        exported = work / "store.jsonl"
        summary, wall, cpu = await timed(
            "export", "--url", url, "--store", source, "--out", str(exported)
        )
        rows = [("export", summary["events"], wall, cpu, summary["events_per_second"], 0)]
        variants = {
            "import --in-flight 1 (before)": ["--in-flight", "1"],
            "import (pipelined, 4 in flight)": [],
            "import --renumber (appends)": ["--renumber"],
        }
        for label, options in variants.items():
            target = f"copy{uuid.uuid4().hex[:8]}"
            await client.create_store(target)
            summary, wall, cpu = await timed(
                "import", "--url", url, "--store", target, str(exported), *options
            )
            done = summary["imported"] + summary["skipped"]
            rows.append((label, done, wall, cpu, summary["events_per_second"], summary["requests"]))
        if before is not None:
            legacy = work / "legacy.jsonl"
            legacy_copy(exported, legacy)
            target = f"main{uuid.uuid4().hex[:8]}"
            await client.create_store(target)
            summary, wall, cpu = await timed(
                "import", "--url", url, "--store", target, str(legacy), code=before
            )
            done = summary["imported"] + summary["skipped"]
            rate = round(done / summary["seconds"]) if summary["seconds"] else 0
            rows.append((f"import, {before}'s code", done, wall, cpu, rate, summary["requests"]))
    print(
        f"{'command':34} {'events':>10} {'wall s':>8} {'cpu s':>7} {'events/s':>10} {'requests':>9}"
    )
    for label, count, wall, cpu, rate, sent in rows:
        print(f"{label:34} {count:>10,} {wall:>8.1f} {cpu:>7.1f} {rate:>10,} {sent:>9,}")
    print(f"file: {exported.stat().st_size / (1 << 20):,.1f} MiB")


async def main_async(args: argparse.Namespace) -> None:
    """Run against `--url`, or a stack of its own."""
    with tempfile.TemporaryDirectory(prefix="esdb-backup-bench-") as work:
        if args.url:
            await bench(args.url, args.events, args.streams, args.run, Path(work), args.before)
            return
        stack = await BenchStack.start("fsync", None)
        try:
            await bench(stack.url, args.events, args.streams, args.run, Path(work), args.before)
        finally:
            await stack.stop()


def main() -> None:
    """`python -m esdb.benchmarks.backup_bench`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the store")
    parser.add_argument("--streams", type=int, default=1000, help="streams they spread over")
    parser.add_argument("--run", type=int, default=10, help="events of a stream in a row")
    parser.add_argument("--url", default=None, help="a running stack (else one of its own)")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="also import with the esdb of this checkout (say /work/main), from the events "
        "and stream lines of the export (the format it reads)",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
