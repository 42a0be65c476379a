"""How the eventsourcing library's records sit in esdb: stored events as stream events,
tracking records as events of tracking streams, snapshots as snapshot-service records.

A stored event of originator `X` at `originator_version` `v` with `topic` `t` and `state` `s`
is an event of stream `str(X)` with event type `t`, data `s` (content type JSON when `s` is
JSON, else `application/octet-stream`, stored byte for byte either way) and JSON metadata
`{"originator_version": v, "originator_id_type": "uuid" | "str"}`. The metadata makes every
event self-describing, so notifications read from `$all` need nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Literal
from uuid import UUID, SafeUUID

import msgspec
from eventsourcing.persistence import DataError, Notification, StoredEvent, Tracking

from esdb.client import NewEvent, RecordedEvent
from esdb.client.snapshots import RecordedSnapshot
from esdb.contracts.api import JSON_CONTENT_TYPE, CompactEvent, ReadFilter
from esdb.contracts.filter_regexes import not_starting_with

OCTET_STREAM = "application/octet-stream"

TRACKING_PREFIX = "_tracking-"
"""Stream ids starting with this hold tracking records (one stream per upstream
application); aggregate ids may not start with it."""

TRACKING_EVENT_TYPE = "Tracking"

SNAPSHOT_SOURCE = "snapshots"
"""The snapshot service's `source_uuid` of the library's snapshots (`purpose="snapshots"`)."""

NOT_TRACKING = not_starting_with(TRACKING_PREFIX)
"""A `stream_regex` matching every stream but tracking streams."""


class EventMetadata(msgspec.Struct, frozen=True):
    """What an aggregate event carries beside its state."""

    originator_version: int
    originator_id_type: Literal["uuid", "str"] = "uuid"


class SnapshotMetadata(msgspec.Struct, frozen=True):
    """What a snapshot record carries beside its state."""

    topic: str
    originator_id_type: Literal["uuid", "str"] = "uuid"


class TrackingData(msgspec.Struct, frozen=True):
    """The data of a tracking event."""

    notification_id: int


_METADATA_KEPT = 4096
"""Distinct metadata (one per originator version) whose decoding is remembered."""
_UUID_TEXT = 36
_UUID_DIGITS = 32
_new = object.__new__
_set = object.__setattr__
_known_metadata: dict[bytes, EventMetadata] = {}
_metadata_encoder = msgspec.json.Encoder()
_event_metadata = msgspec.json.Decoder(EventMetadata)
_snapshot_metadata = msgspec.json.Decoder(SnapshotMetadata)
_tracking_data = msgspec.json.Decoder(TrackingData)


def stream_of(originator_id: UUID | str) -> str:
    """The stream of an originator's events."""
    return str(originator_id)


def tracking_stream(application_name: str) -> str:
    """The stream of the tracking records of one upstream application."""
    return TRACKING_PREFIX + application_name


def is_tracking(stream: str) -> bool:
    """Whether a stream holds tracking records rather than aggregate events."""
    return stream.startswith(TRACKING_PREFIX)


def notifications_filter(topics: tuple[str, ...] | list[str]) -> ReadFilter:
    """The server-side `read_all` filter of notifications with one of `topics` (any topic
    when empty): every aggregate event, no tracking record."""
    return ReadFilter(event_types=list(topics) or None, stream_regex=NOT_TRACKING)


def content_type_of(state: bytes) -> str:
    """JSON when the state is JSON text (so esdb's tools and payload filters can read it),
    else opaque bytes (a cipher's or compressor's output)."""
    try:
        msgspec.json.decode(state)
    except msgspec.DecodeError:
        return OCTET_STREAM
    return JSON_CONTENT_TYPE


def _id_type(originator_id: UUID | str) -> Literal["uuid", "str"]:
    return "uuid" if isinstance(originator_id, UUID) else "str"


def _originator_id(stream: str, id_type: str) -> UUID | str:
    return uuid_of(stream) if id_type == "uuid" else stream


def uuid_of(text: str) -> UUID:
    """`UUID(text)`, at half the cost for the canonical text (`str(uuid)`, as every stream of
    a UUID-keyed aggregate is named): the int is parsed once and set, as psycopg's C loader
    does, instead of going through `UUID.__init__`'s checks of every accepted form."""
    digits = text.replace("-", "")
    if len(text) != _UUID_TEXT or len(digits) != _UUID_DIGITS or not digits.isalnum():
        return UUID(text)
    found = _new(UUID)
    _set(found, "int", int(digits, 16))
    _set(found, "is_safe", SafeUUID.unknown)
    return found


def new_event(stored: StoredEvent) -> NewEvent:
    """A stored event as an event to append to its originator's stream."""
    metadata = EventMetadata(stored.originator_version, _id_type(stored.originator_id))
    return NewEvent(
        stored.topic,
        stored.state,
        metadata=_metadata_encoder.encode(metadata),
        content_type=content_type_of(stored.state),
    )


def event_metadata(event: RecordedEvent) -> EventMetadata:
    """The originator version and id type of a recorded aggregate event; `DataError` for an
    event the library did not write."""
    found = _known_metadata.get(event.metadata) or _decoded_metadata(event.metadata)
    if found is None:
        msg = (
            f"event {event.position} of stream {event.stream_id!r} has no originator "
            f"version in its metadata: it was not written by the eventsourcing library"
        )
        raise DataError(msg)
    return found


def _decoded_metadata(raw: bytes) -> EventMetadata | None:
    """An aggregate event's metadata (None: the library did not write the event), remembered
    by its bytes: there is one per originator version, and reads meet them again and again."""
    try:
        found = _event_metadata.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if len(_known_metadata) >= _METADATA_KEPT:
        _known_metadata.clear()
    _known_metadata[raw] = found
    return found


def stored_event(event: RecordedEvent, originator_id: UUID | str) -> StoredEvent:
    """A recorded event of `originator_id`'s stream as the library's stored event."""
    return StoredEvent(
        originator_id=originator_id,
        originator_version=event_metadata(event).originator_version,
        topic=event.event_type,
        state=event.data,
    )


def notification(event: RecordedEvent | CompactEvent) -> Notification | None:
    """A recorded aggregate event as a notification (its id is the event's position); None
    for an event that the library did not write (no originator version in its metadata)."""
    found = notifications([event])
    return found[0] if found else None


def notifications(events: Iterable[RecordedEvent | CompactEvent]) -> list[Notification]:
    """Recorded aggregate events as notifications, leaving out events the library did not
    write. What is the same from event to event is worked out once: the metadata (one per
    originator version), and the originator id of a stream.

    Every notification an application reads is built here, so each has its fields set as
    the frozen dataclass's `__init__` sets them (`object.__setattr__`), without the call of
    `__init__` and its keyword arguments: 0.84-0.92 µs a notification kept against 1.19-1.28
    (of about 2 µs of CPU per notification read). `_SETTABLE` says whether those are all of
    `Notification`'s fields (a library version with more would get `__init__`)."""
    selected: list[Notification] = []
    known_ids: dict[str, UUID | str] = {}
    for event in events:
        metadata = _known_metadata.get(event.metadata) or _decoded_metadata(event.metadata)
        if metadata is None:
            continue
        stream = event.stream_id
        originator_id = known_ids.get(stream)
        if originator_id is None:
            originator_id = known_ids[stream] = _originator_id(stream, metadata.originator_id_type)
        if _SETTABLE:
            found = _new(Notification)
            _set(found, "originator_id", originator_id)
            _set(found, "originator_version", metadata.originator_version)
            _set(found, "topic", event.event_type)
            _set(found, "state", event.data)
            _set(found, "id", event.position)
        else:
            found = Notification(
                id=event.position,
                originator_id=originator_id,
                originator_version=metadata.originator_version,
                topic=event.event_type,
                state=event.data,
            )
        selected.append(found)
    return selected


def _settable() -> bool:
    """Whether `notifications` sets every field of `Notification`, as `__init__` would."""
    names = ("originator_id", "originator_version", "topic", "state", "id")
    return tuple(f.name for f in fields(Notification)) == names


_SETTABLE = _settable()


def tracking_event(tracking: Tracking) -> NewEvent:
    """A tracking record as an event of its upstream application's tracking stream."""
    data = _metadata_encoder.encode(TrackingData(tracking.notification_id))
    return NewEvent(TRACKING_EVENT_TYPE, data)


def tracked_id(event: RecordedEvent) -> int:
    """The notification id a tracking event records."""
    return _tracking_data.decode(event.data).notification_id


def snapshot_metadata(stored: StoredEvent) -> bytes:
    """The metadata of a snapshot record: the snapshot's topic and originator id type."""
    return _metadata_encoder.encode(SnapshotMetadata(stored.topic, _id_type(stored.originator_id)))


def stored_snapshot(snapshot: RecordedSnapshot, originator_id: UUID | str) -> StoredEvent:
    """A snapshot record as the library's stored event."""
    metadata = _snapshot_metadata.decode(snapshot.metadata)
    return StoredEvent(
        originator_id=originator_id,
        originator_version=snapshot.version,
        topic=metadata.topic,
        state=snapshot.data,
    )
