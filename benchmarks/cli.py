"""`esdb bench`: esdb against JetStream as an event store, on the same nats-server.

`add_bench_arguments` and `run_bench` are what the `esdb` CLI wires in; `main` runs the same
thing standalone (`python -m esdb.benchmarks`, `python benchmarks/run.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NatsClient

from esdb.benchmarks.appends import (
    AppendPlan,
    AppendRun,
    Progress,
    ensure_jetstream_stream,
    esdb_appends,
    event_payload,
    jetstream_appends,
    jetstream_run_subjects,
    report_progress,
)
from esdb.benchmarks.figures import (
    APPEND_TARGET,
    READ_TARGET,
    BenchConfig,
    BenchReport,
    ratio,
)
from esdb.benchmarks.reads import ReadFailed, esdb_read_all, jetstream_ordered_read
from esdb.benchmarks.report import format_report
from esdb.benchmarks.stack import BenchStack, StackError

T = TypeVar("T")
SCENARIOS = ("append", "read", "all")
_PROGRESS_EVERY_S = 10.0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `esdb bench`."""
    parser.add_argument(
        "--events", type=_positive, default=20_000, help="events appended per path (20000)"
    )
    parser.add_argument(
        "--clients", type=_positive, default=64, help="concurrent appending clients (64)"
    )
    parser.add_argument(
        "--durability",
        choices=("fsync", "interval", "memory"),
        default="fsync",
        help="durability of the stack it starts and of the JetStream comparison stream (fsync)",
    )
    parser.add_argument(
        "--url",
        default=None,
        help="NATS URL of a running stack to use instead of starting one",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="own stack: keep its data here (default: a temporary directory, removed); "
        "with --url: the running stack's --data-dir, to find its pid files for memory and "
        "CPU figures",
    )
    parser.add_argument("--store", default="default", help="the esdb store to append to")
    parser.add_argument(
        "--stream-length", type=_positive, default=100, help="events per stream (100)"
    )
    parser.add_argument(
        "--event-bytes", type=_positive, default=160, help="JSON body size of an event (160)"
    )
    parser.add_argument(
        "--read-page", type=_positive, default=1000, help="read_all page size (1000)"
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="all",
        help="append, read (appends first, reports reads only) or all",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds one request may take (30)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


@dataclass(frozen=True)
class BenchOptions:
    """Validated `esdb bench` options."""

    events: int
    clients: int
    durability: str
    url: str | None
    data_dir: Path | None
    store: str
    stream_length: int
    event_bytes: int
    read_page: int
    scenario: str
    timeout: float
    json: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BenchOptions:
        """The options of a parsed command line."""
        return cls(
            events=args.events,
            clients=args.clients,
            durability=args.durability,
            url=args.url,
            data_dir=args.data_dir,
            store=args.store,
            stream_length=args.stream_length,
            event_bytes=args.event_bytes,
            read_page=args.read_page,
            scenario=args.scenario,
            timeout=args.timeout,
            json=args.json,
        )


def run_bench(args: argparse.Namespace) -> int:
    """Run `esdb bench` and print its report; 0 when every request succeeded, else 1."""
    options = BenchOptions.from_args(args)
    try:
        report = asyncio.run(bench(options))
    except (StackError, ReadFailed, OSError, nats.errors.Error) as e:
        print(f"esdb bench: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if options.json:
        print(msgspec.json.format(msgspec.json.encode(report)).decode())
    else:
        print(format_report(report))
    failed = any(figures.errors for figures in report.appends)
    return 1 if failed else 0


async def bench(options: BenchOptions) -> BenchReport:
    """Start (or find) the stack, run the scenario, stop what was started."""
    if options.url is None:
        _say(f"starting esdb up ({options.durability})...")
        stack = await BenchStack.start(options.durability, options.data_dir)
    else:
        stack = BenchStack(url=options.url, data_dir=options.data_dir)
    try:
        nc = await nats.connect(stack.url, name="esdb-bench", max_reconnect_attempts=3)
        try:
            return await _scenario(options, stack, nc)
        finally:
            await nc.close()
    finally:
        await stack.stop()


async def _scenario(options: BenchOptions, stack: BenchStack, nc: NatsClient) -> BenchReport:
    js = nc.jetstream(timeout=options.timeout)
    await ensure_jetstream_stream(js, options.durability)
    run_id = secrets.token_hex(3)
    payload = event_payload(options.event_bytes)
    report = BenchReport(
        config=BenchConfig(
            events=options.events,
            clients=options.clients,
            durability=options.durability,
            stream_length=options.stream_length,
            read_page=options.read_page,
            event_bytes=len(payload),
            scenario=options.scenario,
            url=stack.url,
            own_stack=stack.own,
            nats_server_version=_server_version(nc),
        )
    )
    stored = 0
    report.resources.append(stack.sample("start", 0, stored))

    def plan(label: str, events: int) -> AppendPlan:
        return AppendPlan(
            run_id=run_id,
            label=label,
            events=events,
            clients=options.clients,
            stream_length=options.stream_length,
            timeout=options.timeout,
        )

    # One untimed append per client first: connections, caches and stream creation warm up.
    warmup, timed = plan("w", options.clients), plan("t", options.events)

    _say(f"esdb: {options.events:,} appends from {options.clients} clients...")
    esdb_warm = await esdb_appends(nc, options.store, warmup, payload, Progress("", 0))
    progress = Progress("esdb append", options.events)
    esdb_run = await _with_progress(
        progress, esdb_appends(nc, options.store, timed, payload, progress)
    )
    stored += esdb_warm.log.events + esdb_run.log.events
    report.resources.append(stack.sample("esdb appends", stored, stored))

    _say(f"jetstream: {options.events:,} publishes from {options.clients} clients...")
    js_warm = await jetstream_appends(js, warmup, payload, Progress("", 0))
    progress = Progress("jetstream publish", options.events)
    js_run = await _with_progress(progress, jetstream_appends(js, timed, payload, progress))
    js_stored = js_warm.log.events + js_run.log.events
    report.resources.append(stack.sample("js appends", js_stored, stored))

    if options.scenario != "read":
        esdb_figures = esdb_run.log.figures("esdb append", esdb_run.seconds)
        js_figures = js_run.log.figures("jetstream publish (OCC)", js_run.seconds)
        report.appends = [esdb_figures, js_figures]
        report.append_ratio = ratio(
            esdb_figures.events_per_s, js_figures.events_per_s, APPEND_TARGET
        )

    if options.scenario != "append":
        read_timeout = options.timeout + stored / 1000
        _say(f"esdb: read_all of {stored:,} events in pages of {options.read_page}...")
        esdb_read = await esdb_read_all(
            nc,
            options.store,
            start=_first(esdb_warm, esdb_run),
            events=stored,
            page=options.read_page,
            timeout=read_timeout,
        )
        report.resources.append(stack.sample("esdb read", esdb_read.events, stored))
        _say(f"jetstream: ordered consumer over {js_stored:,} messages...")
        js_read = await jetstream_ordered_read(
            js,
            jetstream_run_subjects(run_id),
            start=_first(js_warm, js_run),
            events=js_stored,
            timeout=read_timeout,
        )
        report.resources.append(stack.sample("js read", js_read.events, stored))
        report.reads = [esdb_read, js_read]
        report.read_ratio = ratio(esdb_read.events_per_s, js_read.events_per_s, READ_TARGET)
    return report


def _server_version(nc: NatsClient) -> str:
    version = nc.connected_server_version
    return f"{version.major}.{version.minor}.{version.patch}"


def _first(*runs: AppendRun) -> int:
    """Where the earliest of `runs` started writing (1 when nothing was written)."""
    return min((run.first for run in runs if run.first is not None), default=1)


async def _with_progress(progress: Progress, work: Coroutine[Any, Any, T]) -> T:
    ticker = asyncio.create_task(report_progress(progress, _PROGRESS_EVERY_S, _say))
    try:
        return await work
    finally:
        ticker.cancel()


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the benchmark: the standalone form of `esdb bench`."""
    parser = argparse.ArgumentParser(
        prog="esdb bench",
        description="Append and read throughput of esdb against JetStream as an event store.",
    )
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(argv))
