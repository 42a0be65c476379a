"""Each event's fan-out message, built straight as the NATS protocol frame that publishes it.

The message is a contract (`contracts/topics.py`, docs/api.md): subject
`esdb.events.<store>.<category>.<stream>.<event_type>`, headers `Esdb-Position` and
`Esdb-Event-Id`, and as payload the JSON `EventOut` the read API returns. This module builds
the same bytes without an `EventOut` per event: the JSON strings of streams, types and content
types, the subject tokens and the `created` text are encoded once and reused; what differs per
event (id, version, position, data, metadata) is put in by two `%` formats, the payload's
and the frame's.
`tests/unit/test_emitter_messages.py` checks the result against the `EventOut` encoding for
varied events, and `tests/integration/test_emitter_nats.py` what a subscriber receives."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import msgspec
import nats.errors

from esdb.contracts.api import JSON_CONTENT_TYPE
from esdb.contracts.log import StampedEvent
from esdb.contracts.topics import (
    EVENT_ID_HEADER,
    EVENTS_PREFIX,
    POSITION_HEADER,
    category_of,
    escape_token,
)
from esdb.shared.storage.records import EventRecord
from esdb.shared.wire import uuid_text

_json = msgspec.json.Encoder()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CACHE_LIMIT = 4096
"""Streams (per store) and event types whose encoded forms are kept; past it a cache starts
over, so a store with many streams costs memory only up to here."""

# `EventOut`'s fields in its order, as msgspec writes them (compact, no spaces). Data and
# metadata are JSON values (`null` when empty) for JSON content and base64 strings otherwise.
_BODY = (
    b'{"event_id":"%s","stream_id":%s,"version":%d,"position":%d,"event_type":%s,'
    b'"data":%s,"metadata":%s,"content_type":%s,"created":%s}'
)
# One HPUB frame (NATS client protocol): the headers as nats-py writes a dict of them, in
# this order, then the payload.
_HEADERS_BEFORE_POSITION = f"NATS/1.0\r\n{POSITION_HEADER}: ".encode()
_HEADERS_BEFORE_ID = f"\r\n{EVENT_ID_HEADER}: ".encode()
_FRAME = (
    b"HPUB %s %d %d\r\n"
    + _HEADERS_BEFORE_POSITION.replace(b"%", b"%%")
    + b"%s"
    + _HEADERS_BEFORE_ID.replace(b"%", b"%%")
    + b"%s\r\n\r\n%s\r\n"
)
_UUID_TEXT_BYTES = 36
# The header block's size but for the position's digits (4: the CRLFs after the id).
_HEADER_BYTES = len(_HEADERS_BEFORE_POSITION) + len(_HEADERS_BEFORE_ID) + _UUID_TEXT_BYTES + 4


class MessageTooLarge(nats.errors.MaxPayloadError):
    """An event's fan-out message is over the servers' `max_payload`: NATS cannot carry it."""


class _Encoded:
    """What strings encode to, kept up to `CACHE_LIMIT` of them (then it starts over). Look up
    with `known.get(value) or encode(value)`: nothing encodes to empty bytes."""

    def __init__(self, encode: Callable[[str], bytes]) -> None:
        self.known: dict[str, bytes] = {}
        self._encode = encode

    def encode(self, value: str) -> bytes:
        """Encode a value not known yet, and keep it."""
        if len(self.known) >= CACHE_LIMIT:
            self.known.clear()
        encoded = self.known[value] = self._encode(value)
        return encoded


def _stream_subject(prefix: str) -> Callable[[str], bytes]:
    def subject(stream: str) -> bytes:
        return f"{prefix}{escape_token(category_of(stream))}.{escape_token(stream)}.".encode()

    return subject


# Shared by every store: event types' subject tokens; JSON strings of types and content types.
_type_tokens = _Encoded(lambda event_type: escape_token(event_type).encode())
_json_texts = _Encoded(_json.encode)


class StoreMessages:
    """Builds the publish frames of one store's events; `max_payload` is the servers' limit on
    a message (headers and payload)."""

    def __init__(self, store: str, max_payload: int) -> None:
        self._max_payload = max_payload
        # stream -> its subject up to the event type token, and its JSON string
        self._subjects = _Encoded(_stream_subject(f"{EVENTS_PREFIX}.{store}."))
        self._stream_texts = _Encoded(_json.encode)
        self._created_us = -1
        self._created = b""

    def append_frames(
        self,
        stream: str,
        first_version: int,
        first_position: int,
        events: Iterable[StampedEvent | EventRecord],
        out: list[bytes],
    ) -> None:
        """Add to `out` the frame of each of `events`, at consecutive versions and positions of
        `stream` from the given ones."""
        # The per-event work, spelled out: in the bench every append is one event, so every
        # call and attribute lookup here is paid per event.
        subject = self._subjects.known.get(stream) or self._subjects.encode(stream)
        stream_json = self._stream_texts.known.get(stream) or self._stream_texts.encode(stream)
        tokens, known_tokens = _type_tokens, _type_tokens.known
        texts, known_texts = _json_texts, _json_texts.known
        version, position = first_version, first_position
        for event in events:
            if event.created_us != self._created_us:
                self._created_time(event.created_us)
            content_type = event.content_type
            if content_type == JSON_CONTENT_TYPE:
                data = event.data or b"null"
                metadata = event.metadata or b"null"
            else:
                data = _json.encode(event.data)
                metadata = _json.encode(event.metadata)
            event_id = uuid_text(event.event_id).encode()
            event_type = event.type
            body = _BODY % (
                event_id,
                stream_json,
                version,
                position,
                known_texts.get(event_type) or texts.encode(event_type),
                data,
                metadata,
                known_texts.get(content_type) or texts.encode(content_type),
                self._created,
            )
            if event.tags:  # DCB events only; `EventOut` leaves out an empty list
                body = b'%s,"tags":%s}' % (body[:-1], _json.encode(event.tags))
            position_text = b"%d" % position
            header_bytes = _HEADER_BYTES + len(position_text)
            size = header_bytes + len(body)
            if size > self._max_payload:
                raise MessageTooLarge(
                    f"the fan-out message of position {position} is {size} bytes, over the "
                    f"servers' max_payload of {self._max_payload}"
                )
            out.append(
                _FRAME
                % (
                    subject + (known_tokens.get(event_type) or tokens.encode(event_type)),
                    header_bytes,
                    size,
                    position_text,
                    event_id,
                    body,
                )
            )
            version += 1
            position += 1

    def record_frames(self, records: Iterable[EventRecord], out: list[bytes]) -> None:
        """Add to `out` the frame of each stored event."""
        for record in records:
            self.append_frames(record.stream, record.version, record.position, (record,), out)

    def _created_time(self, created_us: int) -> None:
        # One leader batch stamps all its events with one time, so this is mostly reused.
        self._created_us = created_us
        # As `event_out` makes it (positional: a third cheaper than `microseconds=`).
        self._created = _json.encode(_EPOCH + timedelta(0, 0, created_us))
