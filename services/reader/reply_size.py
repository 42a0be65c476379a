"""How much of a page fits in one NATS reply.

A reply larger than the servers' `max_payload` cannot be sent, and the client would wait out
its timeout for it. So a page is cut to a byte budget: `limit` is a maximum, and the page's
cursor (`next`, `next_position`) then points right after the last item it holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import TypeVar

import msgspec

from esdb.contracts.dcb import MAX_TAG_BYTES
from esdb.shared.storage.records import EventRecord, StreamState

HEADROOM = 64 * 1024
"""Bytes of `max_payload` kept for the reply's envelope and headers."""

DEFAULT_BUDGET = 8 * 1024 * 1024 - HEADROOM  # `esdb up` runs nats-server with 8 MB

_FIELDS = 320  # an event's ids, numbers, timestamp and field names, in either codec

T = TypeVar("T")


def event_bytes(record: EventRecord) -> int:
    """At least the bytes `record` takes in a reply, in JSON or msgpack: a binary payload is
    base64 in JSON, and a character of a string is at most 4 bytes of UTF-8 (or an escape)."""
    payload = len(record.data) + len(record.metadata)
    text = len(record.stream) + len(record.type) + len(record.content_type)
    text += sum(map(len, record.tags)) + 2 * len(record.tags)
    return payload * 4 // 3 + 8 + 6 * text + _FIELDS


def events_fitting(records: Sequence[EventRecord], budget: int) -> Sequence[EventRecord]:
    """`fitting(records, event_bytes, budget)`; a page whose sizes add up to less than the
    budget (most pages) is found so by one sum per field in C, not one call per event."""
    payload = sum(map(len, map(_DATA, records))) + sum(map(len, map(_METADATA, records)))
    text = sum(map(len, map(_STREAM, records))) + sum(map(len, map(_TYPE, records)))
    text += sum(map(len, map(_CONTENT_TYPE, records)))
    text += (MAX_TAG_BYTES + 2) * sum(map(len, map(_TAGS, records)))  # at most, for a tag
    if payload * 4 // 3 + 6 * text + (8 + _FIELDS) * len(records) <= budget:
        return records  # at least the sum of `event_bytes` (each rounds its payload down)
    return fitting(records, event_bytes, budget)


_DATA, _METADATA = attrgetter("data"), attrgetter("metadata")
_STREAM, _TYPE, _CONTENT_TYPE = attrgetter("stream"), attrgetter("type"), attrgetter("content_type")
_TAGS = attrgetter("tags")


def stream_bytes(item: tuple[str, StreamState]) -> int:
    """At least the bytes one `list_streams` entry takes in a reply."""
    name, state = item
    metadata = len(msgspec.json.encode(state.metadata)) * 2 if state.metadata else 2
    return 6 * len(name) + metadata + 64


def fitting(items: Sequence[T], size: Callable[[T], int], budget: int) -> Sequence[T]:
    """The longest prefix of `items` whose sizes add up to at most `budget`; never empty when
    `items` is not, since a single item always fits the request that stored it."""
    total = 0
    for count, item in enumerate(items):
        total += size(item)
        if total > budget and count:
            return items[:count]
    return items
