"""Dynamic consistency boundaries: what a condition costs, how fast reads by query are, and
conditional appends/s of 64 clients on esdb and on the library's PostgreSQL DCB recorder.

    python -m esdb.benchmarks.dcb_bench [--part conditions|appends|all]
        [--histories 10000,100000,1000000] [--clients 64] [--seconds 10] [--url URL]

`conditions` (no NATS): for each history length, a fresh LMDB store gets that many DCB events
through the writer's own plan and apply (each tagged with one of 1,000 accounts and with
`busy`, shared by all), then CPU time (`process_time`) and DCB index entries visited are
measured per condition check (`dcb_conditions.check_condition`, as the leader runs it) and per
read by query (`StoreReader.dcb_read`, as a reader runs it).

`appends`: `clients` threads, each deciding on an account of its own in a loop: append one
tagged event, conditional on nothing matching the account's tag after the position its
previous append returned; then every account's events are read back by its tag, one read
after another. esdb through `PERSISTENCE_MODULE=esdb.eventsourcing` (the bench's own
one-node stack in fsync mode, or `--url`), PostgreSQL through `eventsourcing.dcb.postgres_tt`
(Debian's PostgreSQL 15, a throwaway server with fsync on, as `esdb bench --scenario
eventsourcing` runs it), both through the library's `DCBRecorder` interface, one after the
other in one run. Figures are appends/s and CPU (process time) of this process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from eventsourcing.dcb.api import DCBAppendCondition, DCBEvent, DCBQuery, DCBQueryItem, DCBRecorder
from eventsourcing.dcb.persistence import DCBInfrastructureFactory

from esdb.benchmarks.pg_server import PgServer
from esdb.benchmarks.stack import BenchStack
from esdb.client import Client, EsdbError
from esdb.contracts.commands import (
    EXPECT_ANY,
    DcbCondition,
    DcbItem,
    NewEvent,
    StreamAppend,
    WriteRequest,
)
from esdb.contracts.dcb import DCB_STREAM
from esdb.contracts.event_ids import new_event_id
from esdb.contracts.log import CreateStoreOp, LogEntry
from esdb.services.writer.apply import apply_entry
from esdb.services.writer.dcb_conditions import check_condition
from esdb.services.writer.planning import plan_batch
from esdb.shared.storage.catalog import Catalog, lmdb_catalog
from esdb.shared.storage.lmdb_store import LmdbStore

STORE = "default"
ACCOUNTS = 1000
BATCH = 1000
CHECKS = 2000
DEFAULT_HISTORIES = (10_000, 100_000, 1_000_000)


@dataclass(frozen=True)
class CheckCost:
    """One kind of condition check at one history length."""

    history: int
    kind: str
    cpu_us: float
    index_steps: float


@dataclass(frozen=True)
class ReadSpeed:
    """Reads by query at one history length."""

    history: int
    kind: str
    events_per_read: int
    cpu_us_per_read: float

    @property
    def events_per_s(self) -> float:
        """Events read per CPU second."""
        return self.events_per_read / self.cpu_us_per_read * 1e6


def _event(account: int) -> NewEvent:
    tags = (f"acct-{account}", "busy")
    return NewEvent(new_event_id(), "Entered", b'{"n":1}', b"", "application/json", tags)


def build_history(catalog: Catalog, events: int) -> None:
    """`events` DCB events through the leader's planning and apply, `BATCH` per entry."""
    sequence = catalog.applied_sequence()
    for start in range(0, events, BATCH):
        batch = [_event(n % ACCOUNTS) for n in range(start, min(start + BATCH, events))]
        request = WriteRequest(STORE, [StreamAppend(DCB_STREAM, EXPECT_ANY, batch)])
        plan = plan_batch([request], catalog, now_us=time.time_ns() // 1000)
        sequence += 1
        apply_entry(catalog, sequence, LogEntry(ops=plan.ops))


def _per_call(store: LmdbStore, call: Callable[[int], object], count: int) -> tuple[float, float]:
    """CPU µs and index entries visited per call of `call(i)`."""
    steps = store.index_steps
    started = time.process_time()
    for i in range(count):
        call(i)
    cpu = time.process_time() - started
    return cpu / count * 1e6, (store.index_steps - steps) / count


def measure_history(events: int, root: Path) -> tuple[list[CheckCost], list[ReadSpeed]]:
    """Condition checks and reads by query on a store of `events` DCB events."""
    catalog = lmdb_catalog(root)
    try:
        apply_entry(catalog, 1, LogEntry(ops=[CreateStoreOp(STORE)]))
        build_history(catalog, events)
        store = catalog.get(STORE)
        assert isinstance(store, LmdbStore)
        head = store.last_position()

        def account(i: int) -> tuple[str, ...]:
            return (f"acct-{i % ACCOUNTS}",)

        checks = {
            # A decision on one account, as it reads and appends: nothing after its head.
            "one tag, after head": lambda i: DcbCondition((DcbItem(tags=account(i)),), head),
            # Two tags, one on every event: the leapfrog follows the rarer one.
            "two tags (one busy), after head": lambda i: DcbCondition(
                (DcbItem(tags=(*account(i), "busy")),), head
            ),
            # A unique claim: a tag nobody has, over the whole history.
            "new tag, whole history": lambda i: DcbCondition((DcbItem(tags=(f"new-{i}",)),), None),
            # A type on every event, after the head.
            "type only, after head": lambda i: DcbCondition((DcbItem(("Entered",)),), head),
            # A condition that fails: the first match of an account, over the whole history.
            "one tag, fails at first match": lambda i: DcbCondition(
                (DcbItem(tags=account(i)),), None
            ),
        }
        costs = []
        for kind, condition in checks.items():

            def check(i: int, condition: Callable[[int], DcbCondition] = condition) -> None:
                with contextlib.suppress(EsdbError):
                    check_condition(store, [], condition(i))

            cpu_us, steps = _per_call(store, check, CHECKS)
            costs.append(CheckCost(events, kind, cpu_us, steps))
        per_account = events // ACCOUNTS
        reads = []
        for kind, items, limit, count in (
            ("one account's events", lambda i: (DcbItem(tags=account(i)),), per_account, 200),
            ("first 1000 of a busy tag", lambda i: (DcbItem(tags=("busy",)),), 1000, 50),
        ):

            def read(
                i: int,
                items: Callable[[int], tuple[DcbItem, ...]] = items,
                limit: int = limit,
            ) -> None:
                store.dcb_read(items(i), None, backward=False, limit=limit)

            cpu_us, _ = _per_call(store, read, count)
            reads.append(ReadSpeed(events, kind, limit, cpu_us))
        return costs, reads
    finally:
        catalog.close()


def run_conditions(histories: tuple[int, ...]) -> None:
    """Print condition-check costs and read-by-query speeds per history length."""
    for events in histories:
        with tempfile.TemporaryDirectory(prefix="esdb-dcb-bench-") as tmp:
            built = time.perf_counter()
            costs, reads = measure_history(events, Path(tmp))
            took = time.perf_counter() - built
        print(f"history {events:,} DCB events ({took:.0f} s to build and measure):")
        for cost in costs:
            print(
                f"  condition {cost.kind}: {cost.cpu_us:.1f} µs CPU, "
                f"{cost.index_steps:.1f} index entries visited"
            )
        for speed in reads:
            print(
                f"  read {speed.kind} ({speed.events_per_read} events): "
                f"{speed.cpu_us_per_read:.0f} µs CPU, {speed.events_per_s:,.0f} events/s"
            )


@dataclass(frozen=True)
class AppendRun:
    """Conditional appends of one backend."""

    backend: str
    appends: int
    seconds: float
    cpu_s: float
    refused: int
    read_events: int = 0
    read_s: float = 0.0

    @property
    def per_s(self) -> float:
        """Appends per wall-clock second."""
        return self.appends / self.seconds

    @property
    def read_per_s(self) -> float:
        """Events read by query per wall-clock second."""
        return self.read_events / self.read_s if self.read_s else 0.0


def conditional_appends(
    backend: str, recorder: DCBRecorder, clients: int, seconds: float
) -> AppendRun:
    """`clients` threads appending to accounts of their own, each append conditional on its
    account after the previous append's position, for `seconds`."""
    counts = [0] * clients
    refused = [0] * clients
    stop = threading.Event()
    run_id = uuid.uuid4().hex[:8]

    def client(n: int) -> None:
        tag = f"acct-{run_id}-{n}"
        boundary = DCBQuery([DCBQueryItem(tags=[tag])])
        after = recorder.append([DCBEvent("Opened", b"{}", [tag])])
        while not stop.is_set():
            try:
                after = recorder.append(
                    [DCBEvent("Entered", b'{"n":1}', [tag, "ledger"])],
                    DCBAppendCondition(boundary, after),
                )
                counts[n] += 1
            except Exception:
                refused[n] += 1  # would be a bug: nobody else writes this account
                raise

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    cpu = time.process_time()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    seconds_taken = time.perf_counter() - started
    cpu_taken = time.process_time() - cpu
    # Then each account's whole history by query (its tag), one read after another.
    read_started = time.perf_counter()
    read_events = sum(
        len(list(recorder.read(DCBQuery([DCBQueryItem(tags=[f"acct-{run_id}-{n}"])]))))
        for n in range(clients)
    )
    return AppendRun(
        backend,
        sum(counts),
        seconds_taken,
        cpu_taken,
        sum(refused),
        read_events,
        time.perf_counter() - read_started,
    )


@contextlib.contextmanager
def _factory(env: dict[str, str]) -> Iterator[DCBInfrastructureFactory]:  # type: ignore[type-arg]
    factory = DCBInfrastructureFactory.construct(env)
    try:
        yield factory
    finally:
        factory.close()


async def run_appends(clients: int, seconds: float, url: str | None) -> None:
    """Conditional appends on esdb, then on PostgreSQL, in one run."""
    stack = None if url is not None else await BenchStack.start("fsync", None)
    esdb_url = stack.url if stack is not None else url or ""
    pg = await asyncio.to_thread(PgServer.start)
    store = f"dcbbench_{uuid.uuid4().hex[:8]}"
    runs = []
    try:
        esdb_env = {
            "PERSISTENCE_MODULE": "esdb.eventsourcing",
            "ESDB_URL": esdb_url,
            "ESDB_STORE": store,
        }
        with _factory(esdb_env) as factory:
            runs.append(
                await asyncio.to_thread(
                    conditional_appends, "esdb", factory.dcb_recorder(), clients, seconds
                )
            )
        await asyncio.to_thread(pg.create_database, store)
        pg_env = {
            **pg.env(store, clients),
            "PERSISTENCE_MODULE": "eventsourcing.dcb.postgres_tt",
        }
        with _factory(pg_env) as factory:
            runs.append(
                await asyncio.to_thread(
                    conditional_appends, "postgresql", factory.dcb_recorder(), clients, seconds
                )
            )
        await asyncio.to_thread(pg.drop_database, store)
    finally:
        with contextlib.suppress(EsdbError):
            async with Client.connect(esdb_url) as client:
                await client.remove_store(store)
        await asyncio.to_thread(pg.stop)
        if stack is not None:
            await stack.stop()
    print(f"conditional DCB appends, {clients} clients, {seconds:g} s each:")
    for run in runs:
        print(
            f"  {run.backend}: {run.per_s:,.0f} appends/s ({run.appends:,} in "
            f"{run.seconds:.1f} s; this process {run.cpu_s / max(run.appends, 1) * 1e6:.0f} µs "
            f"CPU per append; refused {run.refused}); then each account read by its tag: "
            f"{run.read_per_s:,.0f} events/s ({run.read_events:,} events)"
        )
    if len(runs) == 2 and runs[1].per_s:
        print(f"  esdb / PostgreSQL: {runs[0].per_s / runs[1].per_s:.2f}x")


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def main() -> None:
    """Run the parts asked for and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--part", choices=("conditions", "appends", "all"), default="all")
    parser.add_argument("--histories", type=_sizes, default=DEFAULT_HISTORIES)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--url", default=None, help="a running stack (default: start one)")
    args = parser.parse_args()
    if args.part in ("conditions", "all"):
        run_conditions(args.histories)
    if args.part in ("appends", "all"):
        asyncio.run(run_appends(args.clients, args.seconds, args.url))


if __name__ == "__main__":
    main()
