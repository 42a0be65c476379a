"""CPU a reader spends per event a `read_all` scans, by filter, with no NATS running.

`python -m esdb.benchmarks.filter_cost [--events N] [--stream-length L]` fills a fresh LMDB
store, then times one `read_all` page over every event with no filter, a stream prefix, a
stream regex as the reader runs it (RE2, answers remembered per stream id), and the same regex
on Python's backtracking `re`, the matcher esdb used before. Run it with `--stream-length 1` for
the worst case of the per-id memo: every event its own stream."""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from esdb.benchmarks.apply_cost import STORE, log_entries
from esdb.contracts.api import ReadFilter
from esdb.services.writer.applier import Applier
from esdb.shared.read_filters import compile_filter
from esdb.shared.storage.catalog import lmdb_catalog
from esdb.shared.storage.port import Predicate, StoreReader
from esdb.shared.storage.visibility import visible_in

PER_ENTRY = 100
PATTERN = r"^apply-0-[0-9]*7$"  # one writer: streams apply-0-<n>


def _filters() -> dict[str, Callable[[], Predicate | None]]:
    backtracking = re.compile(PATTERN)
    return {
        "no filter": lambda: None,
        "stream_prefix": lambda: compile_filter(ReadFilter(stream_prefix="apply-0-1")),
        "stream_regex (RE2)": lambda: compile_filter(ReadFilter(stream_regex=PATTERN)),
        "stream_regex (Python re)": lambda: lambda r: backtracking.search(r.stream) is not None,
    }


@dataclass(frozen=True)
class FilterCost:
    """One filter's scan: the events it matched, and the CPU per scanned event."""

    matched: int
    cpu_us_per_event: float


def _scan(store: StoreReader, also: Predicate | None, events: int) -> FilterCost:
    started = time.process_time()
    page, _ = store.read_all(
        1,
        backward=False,
        limit=events,
        predicate=visible_in(store, time.time_ns() // 1000, also),
        scan_budget=events,
    )
    return FilterCost(len(page), (time.process_time() - started) / events * 1e6)


async def measure(data_dir: Path, events: int, stream_length: int) -> dict[str, FilterCost]:
    """Each filter's cheapest of three scans over a store of `events` events."""
    catalog = lmdb_catalog(data_dir)
    try:
        applier = Applier(catalog)
        raw = log_entries(max(events // PER_ENTRY, 1), PER_ENTRY, 1, stream_length)
        for sequence, entry in enumerate(raw, start=1):
            await applier.apply_raw(sequence, entry)
        store = catalog.get(STORE)
        stored = store.last_position()
        return {
            name: min(
                (_scan(store, make(), stored) for _ in range(3)), key=lambda c: c.cpu_us_per_event
            )
            for name, make in _filters().items()
        }
    finally:
        catalog.close()


def main(argv: list[str] | None = None) -> None:
    """Print the scan cost per event of each filter."""
    parser = argparse.ArgumentParser(prog="python -m esdb.benchmarks.filter_cost")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--stream-length", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        costs = asyncio.run(measure(Path(tmp), args.events, args.stream_length))
    print(f"read_all over {args.events:,} events, streams of {args.stream_length}:")
    for name, cost in costs.items():
        print(
            f"  {name:<26} {cost.cpu_us_per_event:6.2f} µs of CPU per scanned event, "
            f"{cost.matched:,} matched"
        )


if __name__ == "__main__":
    main()
