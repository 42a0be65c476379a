"""`esdb bench`: esdb against JetStream as an event store, on the same nats-server(s), in
alternating rounds; or the failover of the writer leader under load (`--scenario failover`);
or append-to-live-subscriber latency at half the maximum append rate (`--scenario live`); or
persistent delivery with acks at that rate, against a JetStream durable consumer
(`--scenario persistent`); or the same eventsourcing application on esdb and on PostgreSQL
(`--scenario eventsourcing`).

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
from nats.js import JetStreamContext

from esdb.benchmarks.appends import (
    Progress,
    ensure_jetstream_stream,
    event_payload,
    report_progress,
)
from esdb.benchmarks.failover import (
    FailoverError,
    FailoverPlan,
    cluster_status,
    run_failover,
    wait_settled,
)
from esdb.benchmarks.figures import (
    APPEND_TARGET,
    APPEND_TARGET_R3,
    EVENTSOURCING_TARGET,
    READ_TARGET,
    BenchConfig,
    BenchReport,
)
from esdb.benchmarks.live import LivePlan, run_live
from esdb.benchmarks.open_loop import LoadError
from esdb.benchmarks.persistent import PersistentPlan, run_persistent
from esdb.benchmarks.pg_server import PostgresError
from esdb.benchmarks.reads import ReadFailed
from esdb.benchmarks.report import format_report
from esdb.benchmarks.rounds import RoundsPlan, run_rounds
from esdb.benchmarks.stack import BenchStack, StackError
from esdb.contracts.errors import EsdbError
from esdb.contracts.subjects import LOG_STREAM
from esdb.contracts.subscriptions import DEFAULT_MAX_IN_FLIGHT
from esdb.shared.allocator import tune_malloc

T = TypeVar("T")
SCENARIOS = ("append", "read", "all", "failover", "live", "persistent", "eventsourcing")
DEFAULT_EVENTS = 20_000
DEFAULT_AGGREGATES = 1_000
"""eventsourcing: aggregates saved (and got) per backend and round."""
DEFAULT_SECONDS = {"live": 10.0, "persistent": 20.0}
NODE_COUNTS = (1, 3)
_PROGRESS_EVERY_S = 10.0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `esdb bench`."""
    parser.add_argument(
        "--events",
        type=_positive,
        default=None,
        help="events appended per path (20000); live, persistent: appends of the open-loop "
        "phase (default: --duration seconds' worth); eventsourcing: aggregates saved and got "
        "per backend and round (1000)",
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
        help="append, read (appends first, reports reads only), all, failover (kill -9 the "
        "leader's writer under load; needs --nodes 3), live (append to live-subscriber "
        "latency at half the maximum append rate), or persistent (a consumer group that acks "
        "every delivery at that rate, against a JetStream durable consumer), or eventsourcing "
        "(an eventsourcing application's saves, gets and notification reads on esdb and on "
        "PostgreSQL)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive,
        default=3,
        help="rounds of esdb then JetStream phases on fresh streams; medians are reported (3)",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        choices=NODE_COUNTS,
        default=1,
        help="nodes of the stack: 3 starts `esdb up --nodes 3` and compares with an R3 "
        "JetStream stream (1)",
    )
    parser.add_argument(
        "--failover-runs", type=_positive, default=5, help="failover: kills, one per run (5)"
    )
    parser.add_argument(
        "--failover-clients",
        type=_positive,
        default=16,
        help="failover: concurrent appending clients (16)",
    )
    parser.add_argument(
        "--failover-timeout-ms",
        type=_positive,
        default=2000,
        help="failover: the timeout_ms of each append, i.e. how long the gateway waits for a "
        "writer that may have died before it answers `timeout` (2000)",
    )
    parser.add_argument(
        "--rate",
        type=_positive_float,
        default=None,
        help="live, persistent: offer this many appends per second instead of half the rate "
        "a closed-loop probe reaches (skips the probe)",
    )
    parser.add_argument(
        "--duration",
        type=_positive_float,
        default=None,
        help="live, persistent: seconds of open-loop appends, unless --events is given "
        "(live 10, persistent 20)",
    )
    parser.add_argument(
        "--probe-events",
        type=_positive,
        default=5000,
        help="live, persistent: closed-loop appends (from --clients clients) that measure "
        "the maximum append rate (5000)",
    )
    parser.add_argument(
        "--consumers",
        type=_positive,
        default=2,
        help="persistent: competing consumers of the esdb group and of the JetStream durable (2)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=_positive,
        default=DEFAULT_MAX_IN_FLIGHT,
        help="persistent: the group's max_in_flight per consumer; JetStream's max_ack_pending "
        f"is this times --consumers ({DEFAULT_MAX_IN_FLIGHT})",
    )
    parser.add_argument(
        "--threads",
        type=_positive,
        default=8,
        help="eventsourcing: application threads that save and get (PostgreSQL's connection "
        "pool gets as many connections) (8)",
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
    rounds: int = 3
    nodes: int = 1
    failover_runs: int = 5
    failover_clients: int = 16
    failover_timeout_ms: int = 2000
    live_events: int | None = None
    """live, persistent: --events as given (None: --duration seconds' worth)."""
    rate: float | None = None
    duration: float = 10.0
    probe_events: int = 5000
    consumers: int = 2
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    threads: int = 8

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BenchOptions:
        """The options of a parsed command line."""
        return cls(
            events=(
                args.events
                if args.events is not None
                else DEFAULT_AGGREGATES
                if args.scenario == "eventsourcing"
                else DEFAULT_EVENTS
            ),
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
            rounds=args.rounds,
            nodes=args.nodes,
            failover_runs=args.failover_runs,
            failover_clients=args.failover_clients,
            failover_timeout_ms=args.failover_timeout_ms,
            live_events=args.events,
            rate=args.rate,
            duration=(
                DEFAULT_SECONDS.get(args.scenario, 10.0) if args.duration is None else args.duration
            ),
            probe_events=args.probe_events,
            consumers=args.consumers,
            max_in_flight=args.max_in_flight,
            threads=args.threads,
        )


def run_bench(args: argparse.Namespace) -> int:
    """Run `esdb bench` and print its report; 0 when every request succeeded, else 1."""
    options = BenchOptions.from_args(args)
    if options.scenario == "failover" and options.nodes < 3:
        print("esdb bench: --scenario failover needs --nodes 3", file=sys.stderr)
        return 2
    tune_malloc()  # as in the services; both sides' clients run in this process
    try:
        report = asyncio.run(bench(options))
    except (
        StackError,
        ReadFailed,
        FailoverError,
        LoadError,
        PostgresError,
        EsdbError,
        OSError,
        nats.errors.Error,
    ) as e:
        print(f"esdb bench: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if options.json:
        print(msgspec.json.format(msgspec.json.encode(report)).decode())
    else:
        print(format_report(report))
    failed = any(figures.errors for figures in report.appends)
    if report.failover is not None:
        failed = failed or any(
            run.first_ack_s is None or run.anomalies for run in report.failover.runs
        )
    if report.live is not None:
        failed = failed or bool(report.live.errors or report.live.missing)
    if report.persistent is not None:
        failed = failed or any(side.errors or side.missing for side in report.persistent.sides)
    if report.eventsourcing is not None:
        failed = failed or any(
            phase.errors
            for backend in report.eventsourcing.backends
            for phase in (backend.saves, backend.gets, backend.notifications)
        )
    return 1 if failed else 0


async def bench(options: BenchOptions) -> BenchReport:
    """Start (or find) the stack, run the scenario, stop what was started."""
    if options.url is None:
        _say(f"starting esdb up --nodes {options.nodes} ({options.durability})...")
        stack = await BenchStack.start(options.durability, options.data_dir, nodes=options.nodes)
    else:
        stack = BenchStack(url=options.url, data_dir=options.data_dir)
    try:
        nc = await nats.connect(stack.urls, name="esdb-bench", max_reconnect_attempts=3)
        try:
            return await _scenario(options, stack, nc)
        finally:
            await nc.close()
    finally:
        await stack.stop()


async def _scenario(options: BenchOptions, stack: BenchStack, nc: NatsClient) -> BenchReport:
    js = nc.jetstream(timeout=options.timeout)
    payload = event_payload(options.event_bytes)
    failover = options.scenario == "failover"
    open_loop = options.scenario in ("live", "persistent")
    eventsourcing = options.scenario == "eventsourcing"
    report = BenchReport(
        config=BenchConfig(
            events=options.events,
            clients=(
                options.failover_clients
                if failover
                else options.threads
                if eventsourcing
                else options.clients
            ),
            durability=options.durability,
            stream_length=options.stream_length,
            read_page=options.read_page,
            event_bytes=len(payload),
            scenario=options.scenario,
            url=stack.url,
            own_stack=stack.own,
            nats_server_version=_server_version(nc),
            rounds=0 if failover or open_loop else options.rounds,
            nodes=options.nodes,
            jetstream_replicas=(
                0 if failover or eventsourcing or options.scenario == "live" else options.nodes
            ),
        )
    )
    run_id = secrets.token_hex(3)
    if options.nodes > 1:
        # Appends right after `ready` could race the cluster's first leader changes.
        await wait_settled(nc, options.nodes, timeout=60)
    report.resources.append(await stack.sample("start", 0, 0))
    if failover:
        plan = FailoverPlan(
            run_id=run_id,
            store=options.store,
            runs=options.failover_runs,
            clients=options.failover_clients,
            timeout_ms=options.failover_timeout_ms,
            nodes=options.nodes,
        )
        report.failover = await run_failover(nc, js, stack, plan, payload, _say)
        return report
    if options.scenario == "live":
        live_plan = LivePlan(
            run_id=run_id,
            store=options.store,
            rate=options.rate,
            events=options.live_events,
            seconds=options.duration,
            probe_events=options.probe_events,
            clients=options.clients,
            stream_length=options.stream_length,
            timeout=options.timeout,
        )
        await run_live(nc, stack, live_plan, payload, report, _say, _with_progress)
        if report.live is not None:
            report.config.events = report.live.planned
        return report
    if eventsourcing:
        try:
            # eventsourcing and psycopg come with the `bench` extra; no other scenario needs them.
            from esdb.benchmarks.es_rounds import (
                NOTIFICATION_PASSES,
                EventsourcingPlan,
                run_eventsourcing,
            )
        except ImportError as e:
            raise PostgresError(f"{e}: pip install 'esdb[bench]'") from e
        es_plan = EventsourcingPlan(
            run_id=run_id,
            rounds=options.rounds,
            aggregates=options.events,
            gets=options.events,
            threads=options.threads,
            page=options.read_page,
            passes=NOTIFICATION_PASSES,
            target=EVENTSOURCING_TARGET,
        )
        await run_eventsourcing(stack, es_plan, report, _say)
        return report
    if options.scenario == "persistent":
        await ensure_jetstream_stream(js, options.durability, options.nodes)
        persistent_plan = PersistentPlan(
            run_id=run_id,
            store=options.store,
            rate=options.rate,
            events=options.live_events,
            seconds=options.duration,
            probe_events=options.probe_events,
            clients=options.clients,
            stream_length=options.stream_length,
            timeout=options.timeout,
            consumers=options.consumers,
            max_in_flight=options.max_in_flight,
        )
        await run_persistent(nc, js, stack, persistent_plan, payload, report, _say, _with_progress)
        if report.persistent is not None:
            report.config.events = report.persistent.sides[0].planned
        return report
    bench_stream = await ensure_jetstream_stream(js, options.durability, options.nodes)
    report.config.placement = await _placement(nc, js, bench_stream.cluster)
    await run_rounds(
        nc,
        js,
        stack,
        RoundsPlan(
            run_id=run_id,
            rounds=options.rounds,
            events=options.events,
            clients=options.clients,
            stream_length=options.stream_length,
            timeout=options.timeout,
            store=options.store,
            read_page=options.read_page,
            append_target=APPEND_TARGET if options.nodes == 1 else APPEND_TARGET_R3,
            read_target=READ_TARGET,
            report_appends=options.scenario != "read",
            reads=options.scenario != "append",
        ),
        payload,
        report,
        _say,
        _with_progress,
    )
    return report


async def _placement(nc: NatsClient, js: JetStreamContext, bench_cluster: Any) -> dict[str, str]:
    """Which server the bench client talks to and where the leaders are, in a cluster: each
    extra hop between servers shows in the figures."""
    if bench_cluster is None or not getattr(bench_cluster, "replicas", None):
        return {}
    placement = {"bench client": _connected_server(nc)}
    placement["jetstream BENCH_ES leader"] = str(bench_cluster.leader)
    try:
        log_info = await js.stream_info(LOG_STREAM)
        if log_info.cluster is not None:
            placement["esdb log stream leader"] = str(log_info.cluster.leader)
    except nats.errors.Error:
        pass
    status = await cluster_status(nc)
    if status is not None:
        placement["esdb writer leader"] = str(status.leader)
    return placement


def _connected_server(nc: NatsClient) -> str:
    info = getattr(nc, "_server_info", None) or {}
    name = info.get("server_name") or info.get("name")
    url = nc.connected_url
    where = f"{url.hostname}:{url.port}" if url is not None else "?"
    return f"{name} ({where})" if name else where


def _server_version(nc: NatsClient) -> str:
    version = nc.connected_server_version
    return f"{version.major}.{version.minor}.{version.patch}"


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
        description="Append and read throughput of esdb against JetStream as an event store, "
        "failover time, live-subscriber latency, persistent delivery with acks, an "
        "eventsourcing application on esdb against PostgreSQL.",
    )
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(argv))
