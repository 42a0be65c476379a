"""`esdb append`, `esdb read`, `esdb streams` and `esdb info`: events and streams."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from esdb.cli.output import event_json, event_line, json_line, note, table
from esdb.client import (
    AppendResult,
    Client,
    ExpectedVersion,
    InvalidRequest,
    NewEvent,
    ReadFilter,
    RecordedEvent,
)
from esdb.client.client import Direction, From
from esdb.contracts.api import JSON_CONTENT_TYPE, EventIn, StreamSummary

PAGE_SIZE = 1000
_event_line_decoder = msgspec.json.Decoder(EventIn)


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the stream commands to the `esdb` subcommands."""
    append = commands.add_parser(
        "append",
        parents=[common],
        help="append events to a stream",
        description=(
            "Append one event, or many from stdin in one atomic append: with TYPE '-', each "
            'stdin line is an event {"type", "data", "metadata", "event_id", "content_type"}; '
            "with DATA_JSON '-', each stdin line is the data of one TYPE event."
        ),
    )
    append.add_argument("stream", metavar="STREAM")
    append.add_argument("type", metavar="TYPE", help="event type, or '-' for event lines")
    append.add_argument(
        "data", metavar="DATA_JSON", nargs="?", default=None, help="event data, or '-'"
    )
    append.add_argument(
        "--expected-version",
        type=expected_version,
        default="any",
        help="any (default), no_stream, stream_exists or a version",
    )
    append.add_argument("--metadata", metavar="JSON", default=None, help="event metadata")
    append.add_argument("--event-id", default=None, help="event UUID (makes a retry idempotent)")
    append.add_argument(
        "--content-type",
        default=JSON_CONTENT_TYPE,
        help="content type; data other than JSON is taken as UTF-8 text",
    )
    append.set_defaults(run=append_events)

    read = commands.add_parser(
        "read",
        parents=[common],
        help="read a stream, or the whole store with --all",
        description="Print events: position, stream@version, type, data.",
    )
    read.add_argument("stream", metavar="STREAM", nargs="?", default=None)
    read.add_argument("--all", action="store_true", help="read the store's global log")
    read.add_argument(
        "--from",
        dest="from_",
        metavar="FROM",
        type=start_at,
        default=None,
        help="start, end, or a version (a position with --all); default: start, or end "
        "when --backward",
    )
    read.add_argument("--backward", action="store_true", help="newest first")
    read.add_argument(
        "--limit", type=non_negative, default=100, help="most events to print (100; 0 = all)"
    )
    filters = read.add_argument_group("filters (with --all)")
    filters.add_argument(
        "--type",
        dest="event_types",
        metavar="TYPE",
        action="append",
        help="event type (repeatable)",
    )
    filters.add_argument("--type-prefix", metavar="PREFIX", help="event type prefix")
    filters.add_argument(
        "--type-regex", metavar="REGEX", help="event type regular expression (RE2 syntax)"
    )
    filters.add_argument("--stream-prefix", metavar="PREFIX", help="stream id prefix")
    filters.add_argument(
        "--stream-regex", metavar="REGEX", help="stream id regular expression (RE2 syntax)"
    )
    filters.add_argument(
        "--category", metavar="CATEGORY", help="stream category (the part before the first '-')"
    )
    read.set_defaults(run=read_events)

    streams = commands.add_parser(
        "streams", parents=[common], help="list streams with their versions, states and metadata"
    )
    streams.add_argument("--after", default=None, help="start after this stream name")
    streams.add_argument(
        "--limit", type=non_negative, default=100, help="most streams to list (100; 0 = all)"
    )
    streams.set_defaults(run=list_streams)

    info = commands.add_parser(
        "info", parents=[common], help="a stream's version, state and metadata"
    )
    info.add_argument("stream", metavar="STREAM")
    info.set_defaults(run=stream_info)


def expected_version(text: str) -> ExpectedVersion:
    """An `--expected-version` value."""
    if text in ("any", "no_stream", "stream_exists"):
        return text  # type: ignore[return-value]
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not any, no_stream, stream_exists or an integer"
        ) from None


def start_at(text: str) -> From:
    """A `--from` value."""
    if text in ("start", "end"):
        return text  # type: ignore[return-value]
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not start, end or an integer") from None


def non_negative(text: str) -> int:
    """A count that may be 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return value


async def append_events(client: Client, args: argparse.Namespace) -> int:
    """`esdb append`."""
    events = new_events(args)
    result = await client.append(args.stream, events, expected_version=args.expected_version)
    if args.json:
        print(json_line(result))
    else:
        print(_appended(args.stream, len(events), result))
    return 0


def _appended(stream: str, count: int, result: AppendResult) -> str:
    noun = "event" if count == 1 else "events"
    if result.first_version == result.last_version:
        return (
            f"appended {count} {noun} to {stream}@{result.last_version} "
            f"(position {result.last_position})"
        )
    return (
        f"appended {count} {noun} to {stream}@{result.first_version}..{result.last_version} "
        f"(positions {result.first_position}..{result.last_position})"
    )


def new_events(args: argparse.Namespace) -> list[NewEvent]:
    """The events an `esdb append` names, from its arguments or stdin."""
    if args.type == "-":
        if args.data is not None:
            raise InvalidRequest("with TYPE '-' events come from stdin; give no DATA_JSON")
        events = [_event_from_line(line, n) for n, line in _stdin_lines()]
    elif args.data == "-":
        events = [
            _new_event(args, _data(line, args.content_type, f"stdin line {n}"))
            for n, line in _stdin_lines()
        ]
    else:
        data = None if args.data is None else _data(args.data, args.content_type, "DATA_JSON")
        events = [_new_event(args, data)]
    if not events:
        raise InvalidRequest("no events on stdin", field="events")
    return events


def _stdin_lines() -> list[tuple[int, str]]:
    return [(n, line) for n, line in enumerate(sys.stdin, start=1) if line.strip()]


def _new_event(args: argparse.Namespace, data: bytes | None) -> NewEvent:
    metadata = (
        None if args.metadata is None else _data(args.metadata, JSON_CONTENT_TYPE, "--metadata")
    )
    return NewEvent(
        args.type,
        data,
        metadata=metadata,
        event_id=args.event_id,
        content_type=args.content_type,
    )


def _data(text: str, content_type: str, where: str) -> bytes:
    if content_type != JSON_CONTENT_TYPE:
        return text.rstrip("\n").encode()
    try:
        return msgspec.json.encode(msgspec.json.decode(text))
    except msgspec.DecodeError as e:
        raise InvalidRequest(f"{where} is not valid JSON: {e}", field="data") from e


def _event_from_line(line: str, number: int) -> NewEvent:
    try:
        event = _event_line_decoder.decode(line)
        if event.content_type == JSON_CONTENT_TYPE:
            data, metadata = bytes(event.data), bytes(event.metadata)
        else:
            data = msgspec.json.decode(event.data, type=bytes) if event.data else b""
            metadata = msgspec.json.decode(event.metadata, type=bytes) if event.metadata else b""
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise InvalidRequest(f"stdin line {number} is not an event: {e}", field="events") from e
    return NewEvent(
        event.type,
        data,
        metadata=metadata,
        event_id=event.event_id,
        content_type=event.content_type,
    )


async def read_events(client: Client, args: argparse.Namespace) -> int:
    """`esdb read`."""
    direction: Direction = "backward" if args.backward else "forward"
    start: From | None = args.from_
    if start is None:
        start = "end" if args.backward else "start"
    flt = _read_filter(args)
    stream: str | None = args.stream
    if args.all:
        if stream is not None:
            raise InvalidRequest("give a STREAM or --all, not both", field="stream")
    elif stream is None:
        raise InvalidRequest("give a STREAM to read, or --all", field="stream")
    elif flt is not None:
        raise InvalidRequest("filters apply to --all only", field="filter")
    printed = 0
    while start is not None and (args.limit == 0 or printed < args.limit):
        want = PAGE_SIZE if args.limit == 0 else min(PAGE_SIZE, args.limit - printed)
        events: list[RecordedEvent]
        if stream is None:
            all_page = await client.read_all(
                from_position=start, direction=direction, limit=want, filter=flt
            )
            events, start = all_page.events, all_page.next_position
        else:
            stream_page = await client.read_stream(
                stream, from_=start, direction=direction, limit=want
            )
            events, start = stream_page.events, stream_page.next
        for event in events:
            print(event_json(event) if args.json else event_line(event))
        printed += len(events)
    if start is not None:
        note(f"more events follow; continue with --from {start}")
    return 0


def _read_filter(args: argparse.Namespace) -> ReadFilter | None:
    flt = ReadFilter(
        event_types=args.event_types,
        event_type_prefix=args.type_prefix,
        event_type_regex=args.type_regex,
        stream_prefix=args.stream_prefix,
        stream_regex=args.stream_regex,
        category=args.category,
    )
    return None if flt == ReadFilter() else flt


async def list_streams(client: Client, args: argparse.Namespace) -> int:
    """`esdb streams`."""
    listed: list[StreamSummary] = []
    after: str | None = args.after
    more = True
    while more and (args.limit == 0 or len(listed) < args.limit):
        want = PAGE_SIZE if args.limit == 0 else min(PAGE_SIZE, args.limit - len(listed))
        page = await client.list_streams(after=after, limit=want)
        listed.extend(page.streams)
        after, more = page.next, page.next is not None
    if args.json:
        for summary in listed:
            print(json_line(summary))
    elif listed:
        rows = [
            (s.stream, s.version, s.state, json_line(s.metadata) if s.metadata else "")
            for s in listed
        ]
        print(table(("STREAM", "VERSION", "STATE", "METADATA"), rows))
    if more:
        note(f"more streams follow; continue with --after {after}")
    return 0


async def stream_info(client: Client, args: argparse.Namespace) -> int:
    """`esdb info`."""
    info = await client.stream_info(args.stream)
    if args.json:
        print(json_line(info))
    else:
        rows = [
            ("stream", info.stream),
            ("version", info.version),
            ("state", info.state),
            ("metadata", json_line(info.metadata)),
        ]
        for name, value in rows:
            print(f"{name:<9} {value}")
    return 0
