"""`esdb export`: a store's events (or some streams') as JSON lines, read through the public
API, and the line format that `esdb import` reads back."""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple, cast

import msgspec

from esdb.cli.output import json_line, note
from esdb.cli.progress import Progress
from esdb.client import Client, InvalidRequest, NewEvent, RecordedEvent
from esdb.contracts.api import JSON_CONTENT_TYPE

PAGE_SIZE = 1000
_JSON_SPACE = b" \t\r\n"


class EventLine(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One exported event: the fields of the API's `EventOut` (what `esdb read --json` prints),
    plus `base64`, naming the JSON payloads given as base64 because their stored bytes would
    not survive as an inline value (line breaks, outer whitespace, a literal `null`)."""

    event_id: str
    stream_id: str
    version: int
    position: int
    event_type: str
    data: msgspec.Raw | bytes | None
    metadata: msgspec.Raw | bytes | None
    content_type: str
    created: datetime
    base64: list[str] = []


class _LineIn(msgspec.Struct, kw_only=True):
    """A line as `esdb import` takes it: `position` and `created` belong to the source and are
    left out (the target stamps its own)."""

    event_id: str
    stream_id: str
    version: int
    event_type: str
    data: msgspec.Raw = msgspec.Raw()
    metadata: msgspec.Raw = msgspec.Raw()
    content_type: str = JSON_CONTENT_TYPE
    base64: list[str] = []


class LineEvent(NamedTuple):
    """An event read from line `number` of an export, ready to append."""

    number: int
    stream: str
    version: int
    event: NewEvent
    size: int


_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(_LineIn)


def encode_line(event: RecordedEvent) -> bytes:
    """One event as a line of JSON (with its newline)."""
    encoded: list[str] = []
    line = EventLine(
        event_id=event.event_id,
        stream_id=event.stream_id,
        version=event.version,
        position=event.position,
        event_type=event.event_type,
        data=_field(event.data, event.content_type, "data", encoded),
        metadata=_field(event.metadata, event.content_type, "metadata", encoded),
        content_type=event.content_type,
        created=event.created,
        base64=encoded,
    )
    return _encoder.encode(line) + b"\n"


def _field(
    payload: bytes, content_type: str, name: str, encoded: list[str]
) -> msgspec.Raw | bytes | None:
    if not payload:
        return None
    if content_type != JSON_CONTENT_TYPE:
        return payload  # JSON carries bytes as base64
    if payload == b"null" or payload.strip(_JSON_SPACE) != payload or b"\n" in payload:
        encoded.append(name)
        return payload
    return msgspec.Raw(payload)


def decode_line(line: bytes, number: int) -> LineEvent:
    """The event on line `number`; `InvalidRequest` naming the line if it is not one."""
    try:
        raw = _line_decoder.decode(line)
        data = _payload(raw.data, raw.content_type, "data" in raw.base64)
        metadata = _payload(raw.metadata, raw.content_type, "metadata" in raw.base64)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise InvalidRequest(f"line {number} is not an exported event: {e}", line=number) from e
    event = NewEvent(
        raw.event_type,
        data,
        metadata=metadata,
        event_id=raw.event_id,
        content_type=raw.content_type,
    )
    size = len(data) + len(metadata) + len(raw.event_type) + len(raw.content_type) + 64
    return LineEvent(number, raw.stream_id, raw.version, event, size)


def _payload(raw: msgspec.Raw, content_type: str, base64: bool) -> bytes:
    text = bytes(raw)
    if not text or text == b"null":
        return b""
    if content_type == JSON_CONTENT_TYPE and not base64:
        return text
    return msgspec.json.decode(text, type=bytes)


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `export` to the `esdb` subcommands."""
    export = commands.add_parser(
        "export",
        parents=[common],
        help="write a store's events (or some streams') as JSON lines",
        description=(
            "One JSON line per event, in $all order (or stream by stream), up to the end of "
            "the store as it was when the export started. `esdb import` appends them back. "
            "See docs/backup.md."
        ),
    )
    which = export.add_mutually_exclusive_group()
    which.add_argument(
        "--stream",
        dest="streams",
        metavar="STREAM",
        action="append",
        help="export this stream (repeatable)",
    )
    which.add_argument("--all", action="store_true", help="every event of the store (default)")
    export.add_argument(
        "--out",
        type=Path,
        default=None,
        help="file to write ('-' or none: stdout; a name ending in .gz is gzipped)",
    )
    export.set_defaults(run=export_events)


async def export_events(client: Client, args: argparse.Namespace) -> int:
    """`esdb export`."""
    started = time.monotonic()
    streams: set[str] = set()
    count = 0
    with _output(args.out) as out, Progress("export") as progress:
        if args.streams:
            bounds = {s: (await client.stream_info(s)).version for s in args.streams}
            progress.total = sum(version + 1 for version in bounds.values())
            last_position = 0
            for stream, last_version in bounds.items():
                async for event in client.iter_stream(stream, page_size=PAGE_SIZE):
                    if event.version > last_version:
                        break
                    out.write(encode_line(event))
                    last_position = max(last_position, event.position)
                    count += 1
                    progress.advance()
                streams.add(stream)
        else:
            last_position = await last_position_of(client)
            progress.total = last_position
            async for event in client.iter_all(page_size=PAGE_SIZE):
                if event.position > last_position:
                    break
                out.write(encode_line(event))
                streams.add(event.stream_id)
                count += 1
                progress.advance(done=event.position)
    seconds = time.monotonic() - started
    summary = {
        "store": client.store,
        "events": count,
        "streams": len(streams),
        "last_position": last_position,
        "seconds": round(seconds, 3),
        "out": str(args.out) if _is_file(args.out) else "-",
    }
    text = (
        f"exported {counted(count, 'event')} of {counted(len(streams), 'stream')} from store "
        f"{client.store} (up to position {last_position}) in {seconds:.1f} s "
        f"({count / seconds if seconds else 0:,.0f} events/s)"
    )
    if not _is_file(args.out):
        note(text)  # stdout carries the events
    elif args.json:
        print(json_line(summary))
    else:
        print(f"{text} -> {args.out}")
    return 0


async def last_position_of(client: Client) -> int:
    """The position of the store's last visible event (0 when it has none)."""
    page = await client.read_all(from_position="end", direction="backward", limit=1)
    return page.events[0].position if page.events else 0


def open_events_file(path: Path, mode: Literal["rb", "wb"], *, gzipped: bool) -> IO[bytes]:
    """An export file, plain or gzipped."""
    if gzipped:
        return cast(IO[bytes], gzip.GzipFile(path, mode, compresslevel=6))
    return open(path, mode, buffering=1 << 20)


def counted(number: int, noun: str) -> str:
    """`1 event`, `1,200 events`."""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _is_file(path: Path | None) -> bool:
    return path is not None and str(path) != "-"


@contextmanager
def _output(path: Path | None) -> Iterator[IO[bytes]]:
    """stdout, or the file `path`. A regular file is written beside under a temporary name and
    renamed when complete, so a file by that name is always a whole export; anything else
    (a device, a pipe, a link) is written in place."""
    if not _is_file(path):
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    assert path is not None
    gzipped = path.name.endswith(".gz")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        with open_events_file(path, "wb", gzipped=gzipped) as opened:
            yield opened
        return
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open_events_file(partial, "wb", gzipped=gzipped) as opened:
            yield opened
        partial.rename(path)
    finally:
        partial.unlink(missing_ok=True)
