"""CPU the leader's emitter spends per event, step by step, with one nats-server and nothing
else running.

`python -m esdb.benchmarks.emitter_cost [--entries N] [--events-per-entry B] [--repeats R]`
builds log entries like the 3-node append bench's (34 one-event appends each, 160-byte JSON
bodies, streams of 100 events), applies them to a fresh LMDB store, appends them to a log
stream on a local nats-server with JetStream, and times each way of turning them into fan-out
messages published there (no subscriber, so the server only reads):

- `lmdb+eventout+publish`: what the emitter did before: read the events back from LMDB (one
  read per entry; the applied notice it waited for is not counted), build an `EventOut` per
  event, JSON-encode it, and `nc.publish` it with a header dict;
- `log+eventout+publish`: the same messages built from the decoded log entries instead;
- `log+frames+send-each`: the hand-built publish frames (`messages.py`), queued one by one
  through `FramePublisher`;
- `log+frames+send-entry`: the same, one write per log entry;
- `tail+frames+send-entry`: the same, with the entries received from the log stream through
  the emitter's tail (an ordered consumer): what the emitter does now;

and, as parts of those, receiving the entries only (`tail-receive`), building only
(`eventout-build`, `frames-build`), decoding the log entries only (`log-decode`) and
publishing prepared messages only (`publish-dict`: nc.publish with headers, `send-each`,
`send-entry`). Each is run `--repeats` times; the median CPU time (user + system of this
process, so nats-py's socket writes count) per event is printed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import msgspec
import nats
from nats.aio.client import Client as NatsClient

from esdb.benchmarks.apply_cost import STORE, log_entries
from esdb.contracts.log import AppendOp, LogEntry, decode_entry
from esdb.contracts.topics import EVENT_ID_HEADER, POSITION_HEADER, event_subject
from esdb.services.emitter.messages import StoreMessages
from esdb.services.emitter.nats_ports import FramePublisher, log_tail
from esdb.services.supervisor.nats_server import HOST, free_port, nats_server_binary, wait_for_port
from esdb.services.writer.applier import Applier
from esdb.services.writer.log import JetStreamLog
from esdb.shared.storage.catalog import lmdb_catalog
from esdb.shared.storage.lmdb_store import LmdbStore
from esdb.shared.storage.records import EventRecord
from esdb.shared.wire import Codec, event_out

_json = msgspec.json.Encoder()
Message = tuple[str, bytes, dict[str, str]]


def eventout_message(record: EventRecord) -> Message:
    """The message as the emitter built it before (an `EventOut`, a header dict)."""
    out = event_out(record, Codec.JSON)
    headers = {POSITION_HEADER: str(record.position), EVENT_ID_HEADER: out.event_id}
    return event_subject(STORE, record.stream, record.type), _json.encode(out), headers


def records_of(entry: LogEntry) -> list[EventRecord]:
    """The events of an entry's appends as stored records."""
    return [
        EventRecord(
            e.event_id,
            op.stream,
            op.first_version + i,
            op.first_position + i,
            e.type,
            e.data,
            e.metadata,
            e.content_type,
            e.created_us,
        )
        for op in entry.ops
        if isinstance(op, AppendOp)
        for i, e in enumerate(op.events)
    ]


def entry_frames(messages: StoreMessages, entry: LogEntry) -> list[bytes]:
    """An entry's publish frames, as the emitter builds them."""
    frames: list[bytes] = []
    for op in entry.ops:
        if type(op) is AppendOp:
            messages.append_frames(
                op.stream, op.first_version, op.first_position, op.events, frames
            )
    return frames


class Setup:
    """The entries (encoded and decoded), the store they were applied to, and a connection."""

    def __init__(self, raw: list[bytes], store: LmdbStore, nc: NatsClient) -> None:
        self.raw = raw
        self.decoded = [decode_entry(r) for r in raw]
        self.store = store
        self.nc = nc
        self.publisher = FramePublisher(nc)
        self.events = store.last_position()

    async def publish_each(self, messages: list[Message]) -> None:
        for subject, payload, headers in messages:
            await self.nc.publish(subject, payload, headers=headers)
        await asyncio.sleep(0)  # the flusher writes, as between two entries in the emitter

    def lmdb_records(self) -> list[list[EventRecord]]:
        """Each entry's events read back, one read per entry (the old emitter read once per
        applied notice, so per entry while it kept up)."""
        pages: list[list[EventRecord]] = []
        after = 0
        for entry in self.decoded:
            count = sum(len(op.events) for op in entry.ops if isinstance(op, AppendOp))
            records, _ = self.store.read_all(after + 1, backward=False, limit=count)
            pages.append(records)
            after += count
        return pages


async def _variants(setup: Setup) -> dict[str, Callable[[], Awaitable[None]]]:
    messages = StoreMessages(STORE, setup.nc.max_payload)
    prepared = [[eventout_message(r) for r in records_of(e)] for e in setup.decoded]
    frames = [entry_frames(messages, e) for e in setup.decoded]
    send = setup.publisher.send

    async def lmdb_eventout_publish() -> None:
        for page in setup.lmdb_records():
            await setup.publish_each([eventout_message(r) for r in page])

    async def log_eventout_publish() -> None:
        for raw in setup.raw:
            await setup.publish_each([eventout_message(r) for r in records_of(decode_entry(raw))])

    async def log_frames_send_each() -> None:
        for raw in setup.raw:
            for frame in entry_frames(messages, decode_entry(raw)):
                await send(frame)
            await asyncio.sleep(0)

    async def log_frames_send_entry() -> None:
        for raw in setup.raw:
            await send(b"".join(entry_frames(messages, decode_entry(raw))))
            await asyncio.sleep(0)

    async def tail(build: bool) -> None:
        async with contextlib.aclosing(log_tail(setup.nc.jetstream(), 1)) as entries:
            async for sequence, raw in entries:
                if build:
                    await send(b"".join(entry_frames(messages, decode_entry(raw))))
                if sequence == len(setup.raw) + 1:
                    return

    async def eventout_build() -> None:
        for entry in setup.decoded:
            [eventout_message(r) for r in records_of(entry)]

    async def frames_build() -> None:
        for entry in setup.decoded:
            entry_frames(messages, entry)

    async def log_decode() -> None:
        for raw in setup.raw:
            decode_entry(raw)

    async def publish_dict() -> None:
        for entry_messages in prepared:
            await setup.publish_each(entry_messages)

    async def send_each() -> None:
        for entry in frames:
            for frame in entry:
                await send(frame)
            await asyncio.sleep(0)

    async def send_entry() -> None:
        for entry in frames:
            await send(b"".join(entry))
            await asyncio.sleep(0)

    return {
        "lmdb+eventout+publish": lmdb_eventout_publish,
        "log+eventout+publish": log_eventout_publish,
        "log+frames+send-each": log_frames_send_each,
        "log+frames+send-entry": log_frames_send_entry,
        "tail+frames+send-entry": partial(tail, True),
        "tail-receive": partial(tail, False),
        "eventout-build": eventout_build,
        "frames-build": frames_build,
        "log-decode": log_decode,
        "publish-dict": publish_dict,
        "send-each": send_each,
        "send-entry": send_entry,
    }


async def measure(
    data_dir: Path, entries: int, per_entry: int, repeats: int
) -> tuple[int, dict[str, float]]:
    """Events per run, and the median µs of CPU per event of each variant."""
    raw = log_entries(entries, per_entry)
    catalog = lmdb_catalog(data_dir)
    try:
        applier = Applier(catalog)
        for sequence, entry in enumerate(raw, start=1):
            await applier.apply_raw(sequence, entry)
    finally:
        catalog.close()
    port = free_port()
    server = subprocess.Popen(
        [nats_server_binary(), "-a", HOST, "-p", str(port), "-js", "-sd", str(data_dir / "js")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = LmdbStore(data_dir / STORE, readonly=True)
    try:
        await wait_for_port(port)
        nc = await nats.connect(f"nats://{HOST}:{port}")
        log = await JetStreamLog.open(nc.jetstream(), replicas=1, durability="memory")
        for sequence, entry in enumerate(raw):
            await log.append(entry, expected_last=sequence)
        setup = Setup(raw[1:], store, nc)
        variants = await _variants(setup)
        spent: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(repeats):
            for name, run in variants.items():  # interleaved: drifting load hits all alike
                started = time.process_time()
                await run()
                await nc.flush()
                spent[name].append((time.process_time() - started) / setup.events * 1e6)
        await nc.close()
    finally:
        store.close()
        server.terminate()
        server.wait()
    return setup.events, {name: statistics.median(cpu) for name, cpu in spent.items()}


def main(argv: list[str] | None = None) -> None:
    """Print the CPU per event of each variant."""
    parser = argparse.ArgumentParser(prog="python -m esdb.benchmarks.emitter_cost")
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--events-per-entry", type=int, default=34)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        events, cost = asyncio.run(
            measure(Path(tmp), args.entries, args.events_per_entry, args.repeats)
        )
    print(
        f"{events:,} events in entries of {args.events_per_entry}, "
        f"median of {args.repeats}: µs of CPU per event"
    )
    for name, us in cost.items():
        print(f"  {name:24s} {us:6.2f}")


if __name__ == "__main__":
    main()
