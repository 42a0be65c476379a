"""`esdb export`: a store (or some streams) as an export file (`export_format`), read through
the public API: a header, the store's config, every visible event, every stream's state,
snapshots, persistent subscriptions with their checkpoints and parked events, projections with
their partition states, an end record."""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, cast

import msgspec

from esdb.cli.export_format import (
    SCOPE_STORE,
    SCOPE_STREAMS,
    Counts,
    EndLine,
    HeaderLine,
    ProjectionLine,
    SnapshotLine,
    StoreLine,
    StreamLine,
    SubscriptionLine,
    encode_event,
    encode_record,
    header,
)
from esdb.cli.output import json_line, note
from esdb.cli.progress import Progress
from esdb.client import Client, Unauthorized
from esdb.shared.storage.records import STREAM_ACTIVE

PAGE_SIZE = 1000


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `export` to the `esdb` subcommands."""
    export = commands.add_parser(
        "export",
        parents=[common],
        help="write a store (or some streams) to an export file",
        description=(
            "A header, then the store's config, its events in $all order (or stream by "
            "stream; DCB events with their tags) up to the end of the store as it was when "
            "the export started, every stream's state, snapshots, persistent subscriptions "
            "with their checkpoints and parked events, and projections with their states. "
            "`esdb import` restores them exactly. See docs/backup.md."
        ),
    )
    which = export.add_mutually_exclusive_group()
    which.add_argument(
        "--stream",
        dest="streams",
        metavar="STREAM",
        action="append",
        help="export this stream's events and state only (repeatable)",
    )
    which.add_argument("--all", action="store_true", help="the whole store (default)")
    export.add_argument(
        "--out",
        type=Path,
        default=None,
        help="file to write ('-' or none: stdout; a name ending in .gz is gzipped)",
    )
    export.set_defaults(run=export_events)


class _Exporter:
    """Writes the records after the header, counting them."""

    def __init__(self, client: Client, out: IO[bytes], progress: Progress) -> None:
        self._client = client
        self._out = out
        self._progress = progress
        self.counts = Counts()
        self.versions: dict[str, int] = {}  # each stream's last exported version
        self.last_position = 0

    async def config(self) -> None:
        try:
            config = await self._client.store_config(self._client.store)
        except Unauthorized:
            note("the store's config is not exported: it takes an admin's credentials")
            return
        self._out.write(encode_record(StoreLine(description=config.description, tags=config.tags)))

    async def all_events(self, last_position: int) -> None:
        self._progress.total = last_position
        async for event in self._client.iter_all(page_size=PAGE_SIZE):
            if event.position > last_position:
                break
            self._event(event.stream_id, event.version, encode_event(event))
            self._progress.advance(done=event.position)
            self.last_position = event.position

    async def stream_events(self, streams: list[str]) -> None:
        infos = {s: await self._client.stream_info(s) for s in streams}
        # A deleted or tombstoned stream has no events to read, only its state line.
        readable = [s for s, info in infos.items() if info.state == STREAM_ACTIVE]
        self._progress.total = sum(infos[s].version + 1 for s in readable)
        for stream in readable:
            async for event in self._client.iter_stream(stream, page_size=PAGE_SIZE):
                if event.version > infos[stream].version:
                    break
                self._event(stream, event.version, encode_event(event))
                self.last_position = max(self.last_position, event.position)
                self._progress.advance()
        for stream, info in infos.items():
            self._stream(stream, info.version, info.state, info.metadata)

    def _event(self, stream: str, version: int, line: bytes) -> None:
        self._out.write(line)
        self.versions[stream] = version
        self.counts.events += 1

    async def all_streams(self) -> None:
        self._progress.phase("streams", None)
        async for listed in self._client.iter_streams(page_size=PAGE_SIZE):
            version = self.versions.get(listed.stream, listed.version)
            self._stream(listed.stream, version, listed.state, listed.metadata)
            self._progress.advance()

    def _stream(self, stream: str, version: int, state: str, metadata: dict[str, Any]) -> None:
        line = StreamLine(stream_id=stream, version=version, state=state, metadata=dict(metadata))
        self._out.write(encode_record(line))
        self.counts.streams += 1

    async def snapshots(self) -> None:
        self._progress.phase("snapshots", None)
        async for info in self._client.iter_snapshots(page_size=PAGE_SIZE):
            found = await self._client.read_snapshot(
                info.source_uuid, info.stream_uuid, info.version
            )
            self._out.write(encode_record(SnapshotLine(**msgspec.structs.asdict(found))))
            self.counts.snapshots += 1
            self._progress.advance()

    async def subscriptions(self) -> None:
        self._progress.phase("subscriptions", None)
        for info in await self._client.list_subscriptions():
            parked = [
                p async for p in self._client.iter_parked(info.subscription, page_size=PAGE_SIZE)
            ]
            line = SubscriptionLine(
                subscription=info.subscription,
                selector=info.selector,
                start_position=info.start_position,
                message_timeout_ms=info.message_timeout_ms,
                max_retries=info.max_retries,
                max_in_flight=info.max_in_flight,
                checkpoint=info.checkpoint,
                parked=parked,
                resolve_links=info.resolve_links,
            )
            self._out.write(encode_record(line))
            self.counts.subscriptions += 1
            self.counts.parked += len(parked)
            self._progress.advance()

    async def projections(self) -> None:
        self._progress.phase("projections", None)
        for info in await self._client.list_projections():
            partitions = [
                p
                async for p in self._client.iter_projection_partitions(
                    info.name, page_size=PAGE_SIZE
                )
            ]
            line = ProjectionLine(
                name=info.name,
                query=info.query,
                enabled=info.enabled,
                emit_enabled=info.emit_enabled,
                epoch=info.epoch,
                position=info.position,
                events_processed=info.events_processed,
                events_emitted=info.events_emitted,
                reason=info.reason,
                fault_position=info.fault_position,
                partitions=partitions,
            )
            self._out.write(encode_record(line))
            self.counts.projections += 1
            self._progress.advance()

    def end(self) -> None:
        self._out.write(encode_record(EndLine(counts=self.counts)))


async def export_events(client: Client, args: argparse.Namespace) -> int:
    """`esdb export`."""
    started = time.monotonic()
    created = datetime.now(UTC)
    output = ExportOutput(args.out)
    try:
        with Progress("export") as progress:
            exporter = _Exporter(client, output.body, progress)
            if args.streams:
                scope = SCOPE_STREAMS
                await exporter.stream_events(args.streams)
            else:
                scope = SCOPE_STORE
                last_position = await last_position_of(client)
                await exporter.config()
                await exporter.all_events(last_position)
                exporter.last_position = last_position
                await exporter.all_streams()
                await exporter.snapshots()
                await exporter.subscriptions()
                await exporter.projections()
            exporter.end()
        counts = exporter.counts
        output.finish(
            header(client.store, client.url, created, scope, exporter.last_position, counts)
        )
    finally:
        output.discard()
    seconds = time.monotonic() - started
    summary = {
        "store": client.store,
        "events": counts.events,
        "streams": counts.streams,
        "snapshots": counts.snapshots,
        "subscriptions": counts.subscriptions,
        "parked": counts.parked,
        "projections": counts.projections,
        "last_position": exporter.last_position,
        "seconds": round(seconds, 3),
        "events_per_second": round(counts.events / seconds) if seconds else 0,
        "out": str(args.out) if _is_file(args.out) else "-",
    }
    text = (
        f"exported {counted(counts.events, 'event')}, {counted(counts.streams, 'stream')}, "
        f"{counted(counts.snapshots, 'snapshot')}, "
        f"{counted(counts.subscriptions, 'subscription')} ({counts.parked:,} parked) and "
        f"{counted(counts.projections, 'projection')} from "
        f"store {client.store} (up to position {exporter.last_position}) in {seconds:.1f} s "
        f"({counts.events / seconds if seconds else 0:,.0f} events/s)"
    )
    if not _is_file(args.out):
        note(text)  # stdout carries the file
    elif args.json:
        print(json_line(summary))
    else:
        print(f"{text} -> {args.out}")
    return 0


async def last_position_of(client: Client) -> int:
    """The position of the store's last visible event (0 when it has none)."""
    page = await client.read_all(from_position="end", direction="backward", limit=1)
    return page.events[0].position if page.events else 0


def open_events_file(path: Path, mode: Literal["rb", "wb", "ab"], *, gzipped: bool) -> IO[bytes]:
    """An export file, plain or gzipped."""
    if gzipped:
        return cast(IO[bytes], gzip.GzipFile(path, mode, compresslevel=6))
    return open(path, mode, buffering=1 << 20)


def counted(number: int, noun: str) -> str:
    """`1 event`, `1,200 events`."""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _is_file(path: Path | None) -> bool:
    return path is not None and str(path) != "-"


class ExportOutput:
    """Where an export goes. The records are written to a body file first, since the header
    that precedes them holds their counts; `finish` then writes the header and the body to
    the target. A regular file appears under its name only when whole (written beside it
    under a hidden name, then renamed); stdout, a device or a pipe gets the bytes as they are.
    A .gz body is its own gzip member, copied as it is after the header's."""

    def __init__(self, target: Path | None) -> None:
        self._target = target if _is_file(target) else None
        self._gzipped = self._target is not None and self._target.name.endswith(".gz")
        if self._target is not None:
            self._body_path = self._target.with_name(f".{self._target.name}.body")
        else:
            handle, name = tempfile.mkstemp(prefix="esdb-export-", suffix=".body")
            os.close(handle)
            self._body_path = Path(name)
        self.body = open_events_file(self._body_path, "wb", gzipped=self._gzipped)

    def finish(self, head: HeaderLine) -> None:
        """Write the header, then the body, to the target."""
        self.body.close()
        target = self._target
        if target is None:
            sys.stdout.buffer.write(encode_record(head))
            with open(self._body_path, "rb") as body:
                shutil.copyfileobj(body, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
            return
        in_place = target.is_symlink() or (target.exists() and not target.is_file())
        written = target if in_place else target.with_name(f".{target.name}.partial")
        with open_events_file(written, "wb", gzipped=self._gzipped) as out:
            out.write(encode_record(head))
        with open(written, "ab") as out, open(self._body_path, "rb") as body:
            shutil.copyfileobj(body, out, 1 << 20)
        if not in_place:
            written.rename(target)

    def discard(self) -> None:
        """Remove the work files (after `finish`, or when the export failed)."""
        self.body.close()
        self._body_path.unlink(missing_ok=True)
        if self._target is not None:
            self._target.with_name(f".{self._target.name}.partial").unlink(missing_ok=True)
