"""CPU the writer leader's own code spends per event, stage by stage, with no NATS.

    python -m esdb.benchmarks.write_cost [--batches N] [--batch B] [--codec json|msgpack]

builds one-event append requests like the append bench's (160-byte JSON bodies, 64 writers with
streams of their own, an exact expected version), then for each batch of B requests times what
the leader does between a request's bytes and its reply's bytes: validation (`write_command`),
planning against a real LMDB store, encoding the log entry, applying it, and encoding the
replies. What is left of the leader's CPU per event in `esdb bench` is NATS, asyncio and the
kernel."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from esdb.benchmarks.appends import EVENT_TYPE, event_payload
from esdb.benchmarks.apply_cost import STORE, WRITERS
from esdb.contracts.log import CreateStoreOp, LogEntry, encode_entry
from esdb.contracts.subjects import Op
from esdb.services.writer.applier import Applier
from esdb.services.writer.planning import Planner
from esdb.shared.requests import check_request
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import lmdb_catalog
from esdb.shared.wire import Codec
from esdb.shared.writes import write_command, write_reply

STAGES = ("validate", "plan", "encode", "apply", "reply")


@dataclass
class WriteCost:
    """CPU per event of each stage, and how many events were written."""

    events: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def us_per_event(self, stage: str) -> float:
        """The stage's CPU per event in µs."""
        return self.seconds[stage] / max(self.events, 1) * 1e6

    @property
    def total_us(self) -> float:
        """Every stage's CPU per event in µs."""
        return sum(self.us_per_event(stage) for stage in STAGES)


def requests(batches: int, batch: int, codec: Codec, writers: int = WRITERS) -> list[list[bytes]]:
    """Encoded append requests, `batch` at a time, each expecting its stream's last version."""
    body = msgspec.json.decode(event_payload())
    encode = msgspec.json.encode if codec is Codec.JSON else msgspec.msgpack.encode
    written = [0] * writers
    made: list[list[bytes]] = []
    for b in range(batches):
        round_: list[bytes] = []
        for i in range(batch):
            writer = (b * batch + i) % writers
            version = written[writer]
            written[writer] += 1
            request = {
                "stream": f"write-{writer}-{version // 100}",
                "expected_version": version % 100 - 1 if version % 100 else "no_stream",
                "events": [{"type": EVENT_TYPE, "data": body}],
            }
            round_.append(encode(request))
        made.append(round_)
    return made


async def measure(data_dir: Path, batches: int, batch: int, codec: Codec) -> WriteCost:
    """Time each stage over `batches` batches of `batch` appends into a new store."""
    settings = Settings()
    catalog = lmdb_catalog(data_dir)
    try:
        applier = Applier(catalog)
        await applier.apply_raw(1, encode_entry(LogEntry(ops=[CreateStoreOp(store=STORE)])))
        planner = Planner(catalog)
        cost = WriteCost()
        clock = time.process_time
        for sequence, batch_bytes in enumerate(requests(batches, batch, codec), start=2):
            started = clock()
            commands = []
            for data in batch_bytes:
                check_request(STORE, data, settings)
                commands.append(write_command(STORE, Op.APPEND, data, codec, settings)[0])
            validated = clock()
            plan = planner.plan_batch(commands, now_us=time.time_ns() // 1000)
            planned = clock()
            entry = LogEntry(ops=plan.ops, leader="bench")
            raw = encode_entry(entry)
            encoded = clock()
            async with applier.lock:
                applier.apply_locked(sequence, entry, raw)
            planner.reset()
            applied = clock()
            for outcome in plan.outcomes:
                reply, error = write_reply(Op.APPEND, outcome, codec)
                if error is not None:
                    raise RuntimeError(f"an append failed: {reply!r}")
            replied = clock()
            marks = (started, validated, planned, encoded, applied, replied)
            for stage, begun, ended in zip(STAGES, marks, marks[1:], strict=False):
                cost.seconds[stage] += ended - begun
            cost.events += len(batch_bytes)
        return cost
    finally:
        catalog.close()


def main(argv: list[str] | None = None) -> None:
    """Print the leader's CPU per event, stage by stage."""
    parser = argparse.ArgumentParser(prog="python -m esdb.benchmarks.write_cost")
    parser.add_argument("--batches", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=35)
    parser.add_argument("--codec", choices=[c.value for c in Codec], default=Codec.MSGPACK.value)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cost = asyncio.run(measure(Path(tmp), args.batches, args.batch, Codec(args.codec)))
    stages = ", ".join(f"{stage} {cost.us_per_event(stage):.1f}" for stage in STAGES)
    print(
        f"{cost.events:,} one-event appends in batches of {args.batch} ({args.codec}): "
        f"{cost.total_us:.1f} µs of CPU per event ({stages})"
    )


if __name__ == "__main__":
    main()
