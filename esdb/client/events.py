"""Events as the client sees them: what to append, what reads return, and pages of them."""

from __future__ import annotations

import uuid
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, overload

import msgspec

from esdb.contracts.api import JSON_CONTENT_TYPE, CompactEvent

T = TypeVar("T")

ExpectedVersion = int | Literal["any", "no_stream", "stream_exists"]
"""`"any"`, `"no_stream"`, `"stream_exists"` or the exact version the stream must be at."""

_json_encoder = msgspec.json.Encoder()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. With JSON content `data`/`metadata` may be any JSON-able value
    (bytes are taken as already-encoded JSON); with any other content type they are bytes.
    Give `event_id` (a UUID string) to make retries of the same append idempotent."""

    type: str
    data: object
    _: KW_ONLY
    metadata: object = None
    event_id: str | None = None
    content_type: str = JSON_CONTENT_TYPE

    def data_bytes(self) -> bytes:
        """`data` as the bytes to store."""
        return _payload(self.data, self.content_type, "data")

    def metadata_bytes(self) -> bytes:
        """`metadata` as the bytes to store (empty when there is none)."""
        return _payload(self.metadata, self.content_type, "metadata")


@dataclass(frozen=True, slots=True)
class AppendSpec:
    """One stream's part of `append_multi`: its events and the version it must be at."""

    stream: str
    events: list[NewEvent]
    _: KW_ONLY
    expected_version: ExpectedVersion = "any"


def _payload(value: object, content_type: str, field: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if content_type != JSON_CONTENT_TYPE:
        raise TypeError(
            f"{field} must be bytes for content type {content_type!r}, not {type(value).__name__}"
        )
    return _json_encoder.encode(value)


class JsonPayload:
    """`json()` and `metadata_json()` for anything read back with `data` and `metadata`."""

    __slots__ = ()
    data: bytes
    metadata: bytes

    @overload
    def json(self) -> Any: ...

    @overload
    def json(self, type: type[T]) -> T: ...

    def json(self, type: Any = Any) -> Any:
        """`data` decoded as JSON, optionally into `type`; None when there is no data."""
        return msgspec.json.decode(self.data, type=type) if self.data else None

    def metadata_json(self) -> Any:
        """`metadata` decoded as JSON; None when there is none."""
        return msgspec.json.decode(self.metadata) if self.metadata else None


class RecordedEvent(msgspec.Struct, JsonPayload, frozen=True, kw_only=True):
    """A stored event as read back; `data` and `metadata` are the stored bytes."""

    event_id: str
    stream_id: str
    version: int
    position: int
    event_type: str
    data: bytes
    metadata: bytes
    content_type: str
    created: datetime
    tags: list[str] = []
    """DCB tags (events of the store's `$dcb` stream)."""


class _JsonEvent(msgspec.Struct, kw_only=True):
    """`contracts.api.EventOut` as JSON carries it, payloads still encoded."""

    event_id: str
    stream_id: str
    version: int
    position: int
    event_type: str
    data: msgspec.Raw = msgspec.Raw(b"null")
    metadata: msgspec.Raw = msgspec.Raw(b"null")
    content_type: str
    created: datetime
    tags: list[str] = []


_json_event = msgspec.json.Decoder(_JsonEvent)


def event_from_json(payload: bytes) -> RecordedEvent:
    """A `RecordedEvent` from the JSON encoding of `EventOut` (a live fan-out message): JSON
    payloads are taken as their text, others decoded from base64; null is empty."""
    event = _json_event.decode(payload)
    return RecordedEvent(
        event_id=event.event_id,
        stream_id=event.stream_id,
        version=event.version,
        position=event.position,
        event_type=event.event_type,
        data=_json_payload(event.data, event.content_type),
        metadata=_json_payload(event.metadata, event.content_type),
        content_type=event.content_type,
        created=event.created,
        tags=event.tags,
    )


def _json_payload(raw: msgspec.Raw, content_type: str) -> bytes:
    text = bytes(raw)
    if text == b"null":
        return b""
    if content_type == JSON_CONTENT_TYPE:
        return text
    return msgspec.json.decode(text, type=bytes)


class ReadStreamPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of one stream; `next` is the version to read from next, None at the end."""

    events: list[RecordedEvent]
    next: int | None
    last_version: int


class ReadAllPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of `$all`; `next_position` continues the scan, None at the end of the log."""

    events: list[RecordedEvent]
    next_position: int | None


class ReadAllCompactPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of `$all` as `CompactEvent`s (`read_all_compact`); `next_position` continues
    the scan, None at the end of the log."""

    records: list[CompactEvent]
    next_position: int | None


class CompactReply(msgspec.Struct, kw_only=True):
    """A reply to a `compact` `read_all`: its `records`, or, from a gateway that passed the
    read on without the flag (a NATS without esdb's subject mapping), its `events`."""

    events: list[RecordedEvent] = []
    next_position: int | None
    records: list[CompactEvent] | None = None

    def page(self) -> ReadAllCompactPage:
        """The reply as a page of compact events, whichever form it came in."""
        records = self.records
        if records is None:
            records = [compact_event(event) for event in self.events]
        return ReadAllCompactPage(records=records, next_position=self.next_position)


def compact_event(event: RecordedEvent) -> CompactEvent:
    """A recorded event in the compact form."""
    return CompactEvent(
        event_id=uuid.UUID(event.event_id).bytes,
        stream_id=event.stream_id,
        version=event.version,
        position=event.position,
        event_type=event.event_type,
        data=event.data,
        metadata=event.metadata,
        content_type=event.content_type,
        created_us=(event.created - _EPOCH) // _MICROSECOND,
    )
