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
from esdb.shared.storage.records import STREAM_ACTIVE

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


class StreamLine(msgspec.Struct, kw_only=True, tag_field="kind", tag="stream"):
    """A stream's lifecycle state and metadata, after the events: written for every stream
    that is not simply active with no metadata. `version` is the stream's version as of its
    last exported event (its version when none was exported), so an import can shift
    `truncate_before` by however far the target's versions are from the file's."""

    stream_id: str
    version: int
    state: str
    metadata: dict[str, Any]


class _Kind(msgspec.Struct):
    """Only a line's `kind`: event lines have none."""

    kind: str = "event"


class LineEvent(NamedTuple):
    """An event read from line `number` of an export, ready to append."""

    number: int
    stream: str
    version: int
    event: NewEvent
    size: int


_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(_LineIn)
_kind_decoder = msgspec.json.Decoder(_Kind)
_stream_decoder = msgspec.json.Decoder(StreamLine)


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


def _write_state(
    out: IO[bytes], stream: str, version: int, state: str, metadata: dict[str, object]
) -> int:
    """Write a stream's state line, unless it is active with no metadata (an import recreates
    that by appending alone); how many lines were written."""
    if state == STREAM_ACTIVE and not metadata:
        return 0
    line = StreamLine(stream_id=stream, version=version, state=state, metadata=dict(metadata))
    out.write(_encoder.encode(line) + b"\n")
    return 1


def decode_line(line: bytes, number: int) -> LineEvent | StreamLine:
    """The event or stream state on line `number`; `InvalidRequest` naming the line if it is
    neither."""
    try:
        kind = _kind_decoder.decode(line).kind
        if kind == "stream":
            return _stream_decoder.decode(line)
        if kind != "event":
            raise msgspec.ValidationError(f"unknown kind {kind!r}")
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise InvalidRequest(f"line {number} is not an exported line: {e}", line=number) from e
    return _decode_event(line, number)


def _decode_event(line: bytes, number: int) -> LineEvent:
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
    versions: dict[str, int] = {}  # each stream's last exported version
    count = states = 0
    with _output(args.out) as out, Progress("export") as progress:
        if args.streams:
            infos = {s: await client.stream_info(s) for s in args.streams}
            # A deleted or tombstoned stream has no events to read, only its state line.
            readable = [s for s, info in infos.items() if info.state == STREAM_ACTIVE]
            progress.total = sum(infos[s].version + 1 for s in readable)
            last_position = 0
            for stream in readable:
                async for event in client.iter_stream(stream, page_size=PAGE_SIZE):
                    if event.version > infos[stream].version:
                        break
                    out.write(encode_line(event))
                    last_position = max(last_position, event.position)
                    count += 1
                    progress.advance()
                versions[stream] = infos[stream].version
            for stream, info in infos.items():
                states += _write_state(out, stream, info.version, info.state, info.metadata)
        else:
            last_position = await last_position_of(client)
            progress.total = last_position
            async for event in client.iter_all(page_size=PAGE_SIZE):
                if event.position > last_position:
                    break
                out.write(encode_line(event))
                versions[event.stream_id] = event.version
                count += 1
                progress.advance(done=event.position)
            progress.phase("export stream states", None)
            async for listed in client.iter_streams(page_size=PAGE_SIZE):
                version = versions.get(listed.stream, listed.version)
                states += _write_state(out, listed.stream, version, listed.state, listed.metadata)
                progress.advance()
    seconds = time.monotonic() - started
    streams = versions.keys()
    summary = {
        "store": client.store,
        "events": count,
        "streams": len(streams),
        "stream_states": states,
        "last_position": last_position,
        "seconds": round(seconds, 3),
        "out": str(args.out) if _is_file(args.out) else "-",
    }
    text = (
        f"exported {counted(count, 'event')} of {counted(len(streams), 'stream')} "
        f"and {counted(states, 'stream state')} from store "
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
