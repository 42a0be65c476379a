"""`esdb bench --scenario eventsourcing` end to end: the session's stack and a real
PostgreSQL of the bench's own, a tiny run, no timing thresholds; every aggregate saved is got
back equal on both backends, every notification pass reads exactly the events saved, and
nothing is left behind."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgspec

from esdb.benchmarks.cli import BenchOptions, bench
from esdb.benchmarks.es_app import EVENTS_PER_AGGREGATE
from esdb.benchmarks.es_rounds import ESDB_BACKEND, NOTIFICATION_PASSES, POSTGRES_BACKEND
from esdb.benchmarks.pg_server import PROCESS_ROW
from esdb.benchmarks.report import format_report
from esdb.client import Client
from tests.stack import Stack

AGGREGATES = 30
THREADS = 3


def _pg_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("esdb-bench-pg-*"))


async def test_eventsourcing_scenario_reads_back_what_it_saved_on_both_backends(
    stack: Stack,
) -> None:
    before = _pg_dirs()
    options = BenchOptions(
        events=AGGREGATES,
        clients=64,
        durability="fsync",
        url=stack.url,
        data_dir=stack.data_dir,
        store="default",
        stream_length=100,
        event_bytes=160,
        read_page=25,
        scenario="eventsourcing",
        timeout=30.0,
        json=False,
        rounds=2,
        threads=THREADS,
    )
    report = await bench(options)

    es = report.eventsourcing
    assert es is not None
    assert [b.backend for b in es.backends] == [ESDB_BACKEND, POSTGRES_BACKEND]
    per_pass = (AGGREGATES + THREADS) * EVENTS_PER_AGGREGATE  # warm-up saves are read too
    for number, one in enumerate(es.rounds, start=1):
        assert one.round == number
        for side in one.backends:
            where = f"round {number} {side.backend}"
            assert (side.saves.count, side.saves.errors) == (AGGREGATES, 0), where
            # As many gets as saves, in a shuffled order: each aggregate got once, compared
            # with the one saved (an unequal one would be an error, not a get).
            assert (side.gets.count, side.gets.errors) == (AGGREGATES, 0), where
            assert side.notifications.count == NOTIFICATION_PASSES * per_pass, where
            assert side.notifications.errors == 0, where
    assert len(es.rounds) == 2 and es.ratios.saves.value > 0

    text = format_report(report)
    assert "esdb / postgresql notifications/s:" in text
    assert (
        msgspec.json.decode(msgspec.json.encode(report))["eventsourcing"]["passes"]
        == NOTIFICATION_PASSES
    )
    # PostgreSQL's processes were sampled with the stack's.
    assert any(
        p.process == PROCESS_ROW and p.cpu_s > 0 for s in report.resources for p in s.processes
    )

    # The run cleans up after itself: its stores are gone, and so is PostgreSQL.
    async with Client.connect(stack.url) as client:
        stores = {info.store for info in await client.list_stores()}
    assert not any(store.startswith("esbench_") for store in stores)
    assert _pg_dirs() == before
