"""Msgpack bodies of append requests.

The contract's `EventIn` holds `data` as `msgspec.Raw` (JSON text as sent by JSON clients); in
msgpack the payload is plain bytes, so the client sends these same-named shapes with `bytes`
fields and leaves out what is unset.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import msgspec

from esdb.client.events import AppendSpec, ExpectedVersion, NewEvent
from esdb.contracts.api import JSON_CONTENT_TYPE
from esdb.contracts.event_ids import new_event_id


class EventBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One event of an append, as `contracts.api.EventIn` with byte payloads."""

    type: str
    data: bytes = b""
    metadata: bytes = b""
    event_id: str | None = None
    content_type: str = JSON_CONTENT_TYPE


class AppendBody(msgspec.Struct, kw_only=True):
    """`contracts.api.AppendRequest` with byte payloads."""

    stream: str
    events: list[EventBody]
    expected_version: ExpectedVersion = "any"
    timeout_ms: int | None = None


class AppendSpecBody(msgspec.Struct, kw_only=True):
    """`contracts.api.AppendSpec` with byte payloads."""

    stream: str
    events: list[EventBody]
    expected_version: ExpectedVersion = "any"


class AppendMultiBody(msgspec.Struct, kw_only=True):
    """`contracts.api.AppendMultiRequest` with byte payloads."""

    appends: list[AppendSpecBody]
    timeout_ms: int | None = None


def _fresh_id() -> str:
    return str(uuid.UUID(bytes=new_event_id()))


def event_bodies(events: Iterable[NewEvent], *, stamp_ids: bool = False) -> list[EventBody]:
    """The wire form of events to append; with `stamp_ids`, an event without an id gets a
    fresh UUID (version 7, time-ordered), which makes sending the append again safe."""
    return [
        EventBody(
            type=event.type,
            data=event.data_bytes(),
            metadata=event.metadata_bytes(),
            event_id=event.event_id
            or (str(uuid.UUID(bytes=new_event_id())) if stamp_ids else None),
            content_type=event.content_type,
        )
        for event in events
    ]


def append_multi_body(
    appends: Iterable[AppendSpec], timeout_ms: int, *, stamp_ids: bool = False
) -> AppendMultiBody:
    """The wire form of a multi-stream transaction (ids stamped as `event_bodies` does)."""
    return AppendMultiBody(
        appends=[
            AppendSpecBody(
                stream=spec.stream,
                events=event_bodies(spec.events, stamp_ids=stamp_ids),
                expected_version=spec.expected_version,
            )
            for spec in appends
        ],
        timeout_ms=timeout_ms,
    )


def ids_complete(bodies: Iterable[EventBody]) -> bool:
    """Whether every event has an id, so that the append is idempotent."""
    return all(body.event_id for body in bodies)
