"""The `esdb export` file: JSON lines, a header first, then one record per line, each named by
its `kind` (event lines, the bulk, have none), and an `end` record. docs/backup.md describes
every field; `esdb import` reads it back."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from esdb import __version__
from esdb.client import InvalidRequest, RecordedEvent
from esdb.client.snapshots import RecordedSnapshot
from esdb.contracts.api import JSON_CONTENT_TYPE, EventOut
from esdb.contracts.projections import ProjectionPartition
from esdb.contracts.restore import RestoreEvent
from esdb.contracts.subscriptions import ParkedEvent, SelectorSpec

FORMAT = "esdb-export"
FORMAT_VERSION = 3
"""1: event and stream lines only, no header (still imported). 2: the header, store,
snapshot, subscription and end records. 3: events' DCB `tags`, subscriptions'
`resolve_links`, projection records. A new record kind raises it."""
SCOPE_STORE = "store"
SCOPE_STREAMS = "streams"
_JSON_SPACE = b" \t\r\n"


class Counts(msgspec.Struct, kw_only=True, omit_defaults=True):
    """How many records of each kind a file holds."""

    events: int = 0
    streams: int = 0
    snapshots: int = 0
    subscriptions: int = 0
    parked: int = 0
    projections: int = 0


class HeaderLine(msgspec.Struct, kw_only=True, tag_field="kind", tag="header"):
    """The first line: what wrote the file, from which store, when, up to which position
    (`scope` `store`: the whole store; `streams`: the `--stream`s given), and its counts."""

    format: str
    format_version: int
    esdb_version: str
    store: str
    source: str
    created: datetime
    scope: str
    last_position: int
    counts: Counts


class StoreLine(msgspec.Struct, kw_only=True, tag_field="kind", tag="store"):
    """The source store's configuration."""

    description: str = ""
    tags: list[str] = []


class EventLine(EventOut, omit_defaults=True):
    """One event: the API's `EventOut` (what `esdb read --json` prints), plus `base64`, naming
    the JSON payloads given as base64 because their stored bytes would not survive as an
    inline value (line breaks, outer whitespace, a literal `null`).

    When events gain fields (as DCB's `tags`), they belong in `EventOut` and `RestoreEvent`,
    and `_EventIn` must read them."""

    base64: list[str] = []


class _EventIn(msgspec.Struct, kw_only=True):
    """An event line as `esdb import` takes it."""

    event_id: str
    stream_id: str
    version: int
    event_type: str
    position: int = 0
    created: datetime | None = None
    data: msgspec.Raw = msgspec.Raw()
    metadata: msgspec.Raw = msgspec.Raw()
    content_type: str = JSON_CONTENT_TYPE
    tags: list[str] = []
    base64: list[str] = []


class StreamLine(msgspec.Struct, kw_only=True, tag_field="kind", tag="stream"):
    """A stream's lifecycle state, version and metadata, after the events. `version` is the
    stream's version as of its last exported event (its version when none was exported)."""

    stream_id: str
    version: int
    state: str
    metadata: dict[str, Any]


class SnapshotLine(RecordedSnapshot, frozen=True, tag_field="kind", tag="snapshot"):
    """A snapshot as `snapshot_read` gives it; payloads as base64."""


class SubscriptionLine(msgspec.Struct, kw_only=True, tag_field="kind", tag="subscription"):
    """A persistent subscription, its checkpoint and parked events, in the source's
    positions (an import maps them to its own by event id)."""

    subscription: str
    selector: SelectorSpec
    start_position: int
    message_timeout_ms: int
    max_retries: int
    max_in_flight: int
    checkpoint: int
    parked: list[ParkedEvent] = []
    resolve_links: bool = False


class ProjectionLine(msgspec.Struct, kw_only=True, tag_field="kind", tag="projection"):
    """A projection as `projection_info` shows it (`position`: its checkpoint, in the
    source's positions) and every partition's state and result."""

    name: str
    query: str
    enabled: bool
    emit_enabled: bool
    epoch: int
    position: int
    events_processed: int
    events_emitted: int
    reason: str = ""
    fault_position: int | None = None
    partitions: list[ProjectionPartition] = []


class EndLine(msgspec.Struct, kw_only=True, tag_field="kind", tag="end"):
    """The last line: the file is whole, and holds these counts."""

    counts: Counts


Record = (
    HeaderLine | StoreLine | StreamLine | SnapshotLine | SubscriptionLine | ProjectionLine | EndLine
)


class LineEvent(NamedTuple):
    """An event read from line `number` of an export, at `position` in the source."""

    number: int
    stream: str
    version: int
    position: int
    event: RestoreEvent
    size: int


_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(_EventIn)
_record_decoder = msgspec.json.Decoder(Record)
_EVENT_START = b'{"event_id"'


def encode_record(record: Record) -> bytes:
    """One record as a line (with its newline)."""
    return _encoder.encode(record) + b"\n"


def encode_event(event: RecordedEvent) -> bytes:
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
        tags=list(event.tags),
        base64=encoded,
    )
    return _encoder.encode(line) + b"\n"


def header(
    store: str, source: str, created: datetime, scope: str, last_position: int, counts: Counts
) -> HeaderLine:
    """The header of a file this esdb writes."""
    return HeaderLine(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        esdb_version=__version__,
        store=store,
        source=source,
        created=created,
        scope=scope,
        last_position=last_position,
        counts=counts,
    )


def check_header(line: HeaderLine) -> None:
    """Refuse a header this esdb cannot import (another format, or a newer version)."""
    if line.format != FORMAT:
        raise InvalidRequest(f"line 1 is not an esdb export header ({line.format!r})", line=1)
    if line.format_version > FORMAT_VERSION:
        raise InvalidRequest(
            f"the file has export format version {line.format_version} (from esdb "
            f"{line.esdb_version}); this esdb ({__version__}) reads up to {FORMAT_VERSION}",
            line=1,
        )


def decode_line(line: bytes, number: int) -> LineEvent | Record:
    """The event or record on line `number`; `InvalidRequest` naming the line if it is
    neither (a record kind this version does not know included)."""
    if not line.startswith(_EVENT_START):
        try:
            return _record_decoder.decode(line)
        except msgspec.ValidationError as e:
            if b'"kind"' in line:
                raise InvalidRequest(
                    f"line {number} is not an export record: {e}", line=number
                ) from e
        except msgspec.DecodeError as e:
            raise InvalidRequest(f"line {number} is not JSON: {e}", line=number) from e
    return _decode_event(line, number)


def _decode_event(line: bytes, number: int) -> LineEvent:
    try:
        raw = _event_decoder.decode(line)
        data = _payload(raw.data, raw.content_type, "data" in raw.base64)
        metadata = _payload(raw.metadata, raw.content_type, "metadata" in raw.base64)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise InvalidRequest(f"line {number} is not an exported event: {e}", line=number) from e
    if raw.created is None or raw.created.tzinfo is None:
        raise InvalidRequest(f"line {number} has no `created` time (UTC)", line=number)
    event = RestoreEvent(
        event_id=raw.event_id,
        event_type=raw.event_type,
        data=data,
        metadata=metadata,
        content_type=raw.content_type,
        created=raw.created,
        tags=raw.tags,
    )
    size = len(data) + len(metadata) + len(raw.event_type) + len(raw.stream_id) + 96
    return LineEvent(number, raw.stream_id, raw.version, raw.position, event, size)


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


def _payload(raw: msgspec.Raw, content_type: str, base64: bool) -> bytes:
    text = bytes(raw)
    if not text or text == b"null":
        return b""
    if content_type == JSON_CONTENT_TYPE and not base64:
        return text
    return msgspec.json.decode(text, type=bytes)
