"""CPU a writer spends applying log entries to LMDB, with no NATS and nothing else running.

Every replica pays this for every event, so on a machine where all nodes share the cores it is
paid once per node.

    python -m esdb.benchmarks.apply_cost [--entries N] [--events-per-entry B] [--writers W]

builds entries like the append bench's (160-byte JSON bodies, streams of 100 events, W writers
each appending to a stream of its own, so one entry touches up to B streams, and event ids as
the writer makes them), encodes them as the log holds them, then decodes and applies them into
a fresh LMDB store, and prints the CPU time per event."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from esdb.benchmarks.appends import EVENT_TYPE, event_payload
from esdb.contracts.event_ids import new_event_id
from esdb.contracts.log import AppendOp, CreateStoreOp, LogEntry, StampedEvent, encode_entry
from esdb.services.writer.applier import Applier
from esdb.shared.storage.catalog import lmdb_catalog

STORE = "default"
STREAM_LENGTH = 100
WRITERS = 64
"""The append bench's default clients: each appends to its own stream."""


@dataclass(frozen=True)
class ApplyCost:
    """What one measurement applied, and the CPU it took per event."""

    entries: int
    events: int
    cpu_us_per_event: float


def log_entries(
    entries: int, per_entry: int, writers: int = WRITERS, stream_length: int = STREAM_LENGTH
) -> list[bytes]:
    """Encoded log entries: a store creation, then `entries` of `per_entry` one-event appends,
    taken in turn from `writers` writers that each fill streams of `stream_length` events."""
    data = event_payload()
    encoded = [encode_entry(LogEntry(ops=[CreateStoreOp(store=STORE)], leader="bench"))]
    position = 0
    written = [0] * writers
    for _ in range(entries):
        ops = []
        for _ in range(per_entry):
            writer = position % writers
            version = written[writer] % stream_length
            stream = f"apply-{writer}-{written[writer] // stream_length}"
            written[writer] += 1
            event = StampedEvent(new_event_id(), EVENT_TYPE, data, b"", "application/json", 0)
            position += 1
            ops.append(AppendOp(STORE, stream, version, position, [event]))
        encoded.append(encode_entry(LogEntry(ops=list(ops), leader="bench")))
    return encoded


async def measure(
    data_dir: Path, entries: int, per_entry: int, writers: int = WRITERS
) -> ApplyCost:
    """Decode and apply freshly built entries into a new catalog under `data_dir`."""
    raw = log_entries(entries, per_entry, writers)
    catalog = lmdb_catalog(data_dir)
    try:
        applier = Applier(catalog)
        await applier.apply_raw(1, raw[0])
        started = time.process_time()
        for sequence, entry in enumerate(raw[1:], start=2):
            await applier.apply_raw(sequence, entry)
        spent = time.process_time() - started
        events = catalog.get(STORE).last_position()
    finally:
        catalog.close()
    return ApplyCost(entries, events, spent / max(events, 1) * 1e6)


def main(argv: list[str] | None = None) -> None:
    """Print the apply cost per event."""
    parser = argparse.ArgumentParser(prog="python -m esdb.benchmarks.apply_cost")
    parser.add_argument("--entries", type=int, default=1500)
    parser.add_argument("--events-per-entry", type=int, default=40)
    parser.add_argument("--writers", type=int, default=WRITERS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cost = asyncio.run(measure(Path(tmp), args.entries, args.events_per_entry, args.writers))
    print(
        f"applied {cost.events:,} events in {cost.entries:,} entries: "
        f"{cost.cpu_us_per_event:.1f} µs of CPU per event (decode + LMDB apply, one replica)"
    )


if __name__ == "__main__":
    main()
