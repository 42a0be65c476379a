"""The admin-only restore writes (contract): `_sys.store_restore` puts streams and snapshots
back as an export saw them, `_sys.subscription_restore` a persistent subscription with its
checkpoint and parked events, `_sys.projection_restore` a projection with its progress and
partition states. `esdb import` uses them; see docs/backup.md.

Unlike `append`, a restored stream may start above version 0 (its hidden prefix counts as
truncated), skip versions the source hid, keep each event's `created`, and end deleted or
tombstoned at a given version. The DCB events' own `$dcb` stream may be restored too, its
events with their tags (indexed as `dcb_append`'s are). Payloads are bytes whatever the
content type (base64 in JSON).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from esdb.contracts.api import JSON_CONTENT_TYPE, AppendResult
from esdb.contracts.projections import ProjectionPartition
from esdb.contracts.subscriptions import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MESSAGE_TIMEOUT_MS,
    ParkedEvent,
    SelectorSpec,
)

NO_FENCE = -1
"""`expected_position` that lets a restore land wherever the store is."""


class RestoreEvent(msgspec.Struct, kw_only=True, frozen=True):
    """An event to restore, with the id and creation time it had in the source."""

    event_id: str
    event_type: str
    data: bytes = b""
    metadata: bytes = b""
    content_type: str = JSON_CONTENT_TYPE
    created: datetime
    tags: list[str] = []
    """DCB tags (events of the `$dcb` stream only)."""


class RestoreStream(msgspec.Struct, kw_only=True, frozen=True):
    """One stream of a restore. The target's stream must be at `expected_version` (-1: it
    does not exist); `events` get versions from `first_version` on. Then the stream is left
    at `version` (default: its last event's) in `state` (`active`, `deleted`, `tombstoned`)
    with `metadata`; an absent `state` or `metadata` stays as it is."""

    stream: str
    expected_version: int = -1
    first_version: int = 0
    events: list[RestoreEvent] = []
    state: str | None = None
    version: int | None = None
    metadata: dict[str, Any] | None = None


class RestoreSnapshot(msgspec.Struct, kw_only=True, frozen=True):
    """A snapshot to restore, with the creation time it had in the source."""

    source_uuid: str
    stream_uuid: str
    version: int
    data: bytes = b""
    metadata: bytes = b""
    content_type: str = JSON_CONTENT_TYPE
    created: datetime


class StoreRestoreRequest(msgspec.Struct, kw_only=True):
    """`esdb.api._sys.store_restore`: all or nothing, and only when the store's last position
    is `expected_position` (`NO_FENCE`: any). A request whose every event is already stored
    in place answers as it did the first time, whatever the position."""

    store: str
    expected_position: int = NO_FENCE
    streams: list[RestoreStream] = []
    snapshots: list[RestoreSnapshot] = []
    timeout_ms: int | None = None


class StoreRestoreResult(msgspec.Struct, kw_only=True):
    """Where each stream's events landed, in request order (positions 0 for a stream
    restored without events); a replayed request gets its original positions."""

    results: list[AppendResult]


class SubscriptionRestoreRequest(msgspec.Struct, kw_only=True):
    """`esdb.api._sys.subscription_restore`: create persistent subscription `subscription`
    of `store` with its checkpoint and parked events, in the store's own positions."""

    store: str
    subscription: str
    selector: SelectorSpec
    start_position: int = 1
    message_timeout_ms: int = DEFAULT_MESSAGE_TIMEOUT_MS
    max_retries: int = DEFAULT_MAX_RETRIES
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    checkpoint: int = 0
    parked: list[ParkedEvent] = []
    timeout_ms: int | None = None
    resolve_links: bool = False
    """As `SubscriptionCreateRequest.resolve_links`."""


class ProjectionRestoreRequest(msgspec.Struct, kw_only=True):
    """`esdb.api._sys.projection_restore`: create projection `name` of `store` as an export
    saw it, its checkpoint (and `fault_position`) in the store's own positions. `epoch` is the
    source's; the restored projection runs in the next one, so that the events it emits from
    now on cannot take the ids of events it emitted in the source."""

    store: str
    name: str
    query: str
    emit_enabled: bool = False
    enabled: bool = True
    epoch: int = 0
    checkpoint: int = 0
    events_processed: int = 0
    events_emitted: int = 0
    reason: str = ""
    fault_position: int = 0
    partitions: list[ProjectionPartition] = []
    timeout_ms: int | None = None
