"""Msgpack bodies of append requests.

The contract's `EventIn` holds `data` as `msgspec.Raw` (JSON text as sent by JSON clients); in
msgpack the payload is plain bytes, so the client sends these same-named shapes with `bytes`
fields and leaves out what is unset.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from esdb.client.events import AppendSpec, ExpectedVersion, NewEvent
from esdb.contracts.api import JSON_CONTENT_TYPE


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


def event_bodies(events: Iterable[NewEvent]) -> list[EventBody]:
    """The wire form of events to append."""
    return [
        EventBody(
            type=event.type,
            data=event.data_bytes(),
            metadata=event.metadata_bytes(),
            event_id=event.event_id,
            content_type=event.content_type,
        )
        for event in events
    ]


def append_multi_body(appends: Iterable[AppendSpec], timeout_ms: int) -> AppendMultiBody:
    """The wire form of a multi-stream transaction."""
    return AppendMultiBody(
        appends=[
            AppendSpecBody(
                stream=spec.stream,
                events=event_bodies(spec.events),
                expected_version=spec.expected_version,
            )
            for spec in appends
        ],
        timeout_ms=timeout_ms,
    )
