"""Between stored events and the isolate: which events a query reads, the JSON batch it is
given, and its emits as appends with deterministic event ids."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgspec

from esdb.contracts.api import JSON_CONTENT_TYPE
from esdb.contracts.commands import EXPECT_ANY, NewEvent, StreamAppend
from esdb.contracts.errors import EsdbError
from esdb.contracts.projections import LINK_CONTENT_TYPE
from esdb.contracts.topics import category_of
from esdb.services.projection.runtime import Emitted, ProjectionFault, Shape
from esdb.shared.names import check_stream
from esdb.shared.storage.records import EventRecord
from esdb.shared.wire import uuid_text


class _BatchEvent(msgspec.Struct, frozen=True):
    """An event as the prelude reads it (short names: a batch is one JSON string)."""

    p: int
    s: str
    v: int
    t: str
    j: bool
    d: msgspec.Raw | None
    m: msgspec.Raw | None
    id: str
    r: str | None


_encoder = msgspec.json.Encoder()


def selects(shape: Shape, record: EventRecord) -> bool:
    """Whether the query's source and handlers take `record`. Types starting with `$`
    (links, system events) reach only a handler that names them, never `$any`."""
    event_type = record.type
    if event_type in shape.types:
        pass
    elif not shape.any or event_type.startswith("$"):
        return False
    if shape.kind == "streams":
        return record.stream in shape.names
    if shape.kind == "categories":
        return category_of(record.stream) in shape.names
    return True


def batch_json(records: Iterable[EventRecord]) -> bytes:
    """The JSON array the prelude's `process` takes."""
    events = []
    for record in records:
        is_json = record.content_type == JSON_CONTENT_TYPE
        data = msgspec.Raw(record.data) if is_json and record.data else None
        metadata = msgspec.Raw(record.metadata) if is_json and record.metadata else None
        raw = None if is_json else record.data.decode("utf-8", "replace")
        events.append(
            _BatchEvent(
                record.position,
                record.stream,
                record.version,
                record.type,
                is_json,
                data,
                metadata,
                uuid_text(record.event_id),
                raw,
            )
        )
    return _encoder.encode(events)


def emitted_id(name: str, epoch: int, position: int, index: int) -> bytes:
    """The event id of the `index`th event emitted for source `position`: the same on every
    run of the projection in one epoch, so a retried commit is idempotent. A UUID version 8
    (RFC 9562: application-defined)."""
    digest = bytearray(
        hashlib.blake2b(f"{name}\0{epoch}\0{position}\0{index}".encode(), digest_size=16).digest()
    )
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    return bytes(digest)


def emitted_appends(
    name: str, epoch: int, emits: list[Emitted], sources: list[EventRecord]
) -> list[StreamAppend]:
    """One append per target stream (in order of first emit), each event with its id;
    `ProjectionFault` for a target stream that cannot be written."""
    by_stream: dict[str, list[NewEvent]] = {}
    per_source: dict[int, int] = {}
    for emit in emits:
        try:
            check_stream(emit.s, "stream")
        except EsdbError as e:
            raise ProjectionFault(f"cannot emit to {emit.s!r}: {e.message}", emit.i) from e
        position = sources[emit.i].position
        index = per_source.get(position, 0)
        per_source[position] = index + 1
        metadata = b"" if emit.m is None else bytes(emit.m)
        by_stream.setdefault(emit.s, []).append(
            NewEvent(
                emitted_id(name, epoch, position, index),
                emit.t,
                emit.d.encode(),
                metadata,
                LINK_CONTENT_TYPE if emit.l else JSON_CONTENT_TYPE,
            )
        )
    return [StreamAppend(stream, EXPECT_ANY, events) for stream, events in by_stream.items()]
