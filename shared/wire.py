"""Encoding on the wire: JSON for any client, msgpack by `Content-Type` header."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import msgspec

from esdb.contracts.api import JSON_CONTENT_TYPE, MSGPACK_CONTENT_TYPE, EventOut
from esdb.contracts.errors import ErrorReply, EsdbError, InvalidRequest
from esdb.shared.storage.records import EventRecord

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")
_AT_PATH = re.compile(r"at `\$\.?([^`]*)`")


class Codec(StrEnum):
    """How a request was encoded, and so how its reply is."""

    JSON = "json"
    MSGPACK = "msgpack"


_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


def codec_of(headers: dict[str, str] | None) -> Codec:
    """The codec named by a message's `Content-Type` header; JSON when absent."""
    if headers:
        content_type = headers.get("Content-Type") or headers.get("content-type") or ""
        if content_type.startswith(MSGPACK_CONTENT_TYPE):
            return Codec.MSGPACK
    return Codec.JSON


def content_type_of(codec: Codec) -> str:
    """The `Content-Type` header value of a codec."""
    return MSGPACK_CONTENT_TYPE if codec is Codec.MSGPACK else JSON_CONTENT_TYPE


def encode(value: Any, codec: Codec) -> bytes:
    """Encode a reply."""
    if codec is Codec.MSGPACK:
        return _msgpack_encoder.encode(value)
    return _json_encoder.encode(value)


def encode_error(error: EsdbError, codec: Codec) -> bytes:
    """Encode an error reply."""
    return encode(ErrorReply(error.to_body()), codec)


def decode_request(data: bytes, type_: type[T], codec: Codec) -> T:
    """Decode a request; a decode or shape error becomes `InvalidRequest` naming the field."""
    try:
        if codec is Codec.MSGPACK:
            return msgspec.msgpack.decode(data, type=type_)
        return msgspec.json.decode(data, type=type_)
    except msgspec.ValidationError as e:
        raise InvalidRequest(str(e), field=field_of(str(e))) from e
    except msgspec.DecodeError as e:
        raise InvalidRequest(f"malformed {codec.value}: {e}", field="body") from e


def field_of(message: str) -> str:
    """The dotted field path a msgspec validation message points at."""
    path_match = _AT_PATH.search(message)
    path = path_match.group(1) if path_match else ""
    missing = _MISSING_FIELD.search(message)
    if missing:
        return f"{path}.{missing.group(1)}" if path else missing.group(1)
    return path or "body"


def event_out(record: EventRecord, codec: Codec) -> EventOut:
    """The wire form of a stored event for a reply in `codec`."""
    data: msgspec.Raw | bytes | None
    metadata: msgspec.Raw | bytes | None
    if codec is Codec.JSON and record.content_type == JSON_CONTENT_TYPE:
        data = msgspec.Raw(record.data) if record.data else None
        metadata = msgspec.Raw(record.metadata) if record.metadata else None
    else:
        data, metadata = record.data, record.metadata
    return EventOut(
        event_id=str(uuid.UUID(bytes=record.event_id)),
        stream_id=record.stream,
        version=record.version,
        position=record.position,
        event_type=record.type,
        data=data,
        metadata=metadata,
        content_type=record.content_type,
        created=_EPOCH + timedelta(microseconds=record.created_us),
    )
