"""Persistent subscriptions (consumer groups): requests, results and stored records (contract).

A group is created with a selector and a start position; the subscription service beside the
writer leader delivers each selected event on `esdb.subs.<store>.<name>` (consumers subscribe
in queue group `<name>`) until a consumer acks it. See docs/subscriptions.md.
"""

from __future__ import annotations

import re
from datetime import datetime

import msgspec

from esdb.contracts.api import DcbQueryIn
from esdb.contracts.payload_filter import PayloadCondition

SUBS_PREFIX = "esdb.subs"
NAME_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")

ATTEMPT_HEADER = "Esdb-Attempt"

NACK_ACTIONS = ("retry", "park", "skip", "stop")

DEFAULT_MESSAGE_TIMEOUT_MS = 30_000
DEFAULT_MAX_RETRIES = 10
DEFAULT_MAX_IN_FLIGHT = 100
MAX_POSITION = (1 << 63) - 1
"""The highest position a start or a watch may name (positions are 8-byte keys)."""


def delivery_subject(store: str, name: str) -> str:
    """Where a group's events are delivered; consumers join queue group `name`."""
    return f"{SUBS_PREFIX}.{store}.{name}"


class SelectorSpec(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """Which events a group receives: exactly one of stream, category, event type, pattern,
    all or `query` (DCB events matching a DCB query, docs/dcb.md), optionally narrowed by
    `payload` conditions on the event's JSON data."""

    stream: str | None = None
    category: str | None = None
    event_type: str | None = None
    pattern: str | None = None
    all: bool = False
    payload: list[PayloadCondition] | None = None
    query: DcbQueryIn | None = None


class SubscriptionCreateRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.subscription_create`."""

    subscription: str
    selector: SelectorSpec
    start: int | str = "start"
    """A position (inclusive), `"start"` (the first event) or `"end"` (events from now)."""
    message_timeout_ms: int = DEFAULT_MESSAGE_TIMEOUT_MS
    max_retries: int = DEFAULT_MAX_RETRIES
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    timeout_ms: int | None = None
    resolve_links: bool = False
    """Deliver each link event (a projection's `linkTo`) as the event it points to, at the
    link's position; a link to an event no longer readable is passed over."""


class SubscriptionRequest(msgspec.Struct, kw_only=True):
    """`subscription_delete`, `subscription_info` and `replay_parked`: one group by name."""

    subscription: str
    timeout_ms: int | None = None


class SubscriptionListRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.subscription_list`."""

    timeout_ms: int | None = None


class AckRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.ack`: these deliveries are done."""

    subscription: str
    positions: list[int]
    consumer: str | None = None
    timeout_ms: int | None = None


class NackRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.nack`: these deliveries failed; `action` says what happens next."""

    subscription: str
    positions: list[int]
    action: str = "retry"
    reason: str = ""
    consumer: str | None = None
    timeout_ms: int | None = None


class ParkedListRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.subscription_parked`: a page of parked events, by position."""

    subscription: str
    after: int = 0
    limit: int = 100
    timeout_ms: int | None = None


class SubscriptionDefinition(msgspec.Struct, kw_only=True, frozen=True):
    """A group as the replicated state keeps it."""

    name: str
    selector: SelectorSpec
    start_position: int
    message_timeout_ms: int
    max_retries: int
    max_in_flight: int
    uid: str
    """Differs between a group and a later one of the same name, whose checkpoint is new."""
    created_us: int
    resolve_links: bool = False

    @property
    def checkpoint_name(self) -> str:
        """The consumer name its checkpoint is kept under."""
        return f"sub:{self.name}:{self.uid}"


class ParkedRecord(msgspec.Struct, array_like=True, frozen=True):
    """Why and when an event was parked."""

    reason: str
    parked_us: int


class ConsumerInfo(msgspec.Struct, kw_only=True):
    """A consumer the service has heard from."""

    consumer: str
    in_flight: int
    last_seen_ms: int


class SubscriptionInfo(msgspec.Struct, kw_only=True):
    """`subscription_create` / `subscription_info` result."""

    subscription: str
    subject: str
    selector: SelectorSpec
    start_position: int
    message_timeout_ms: int
    max_retries: int
    max_in_flight: int
    checkpoint: int
    """Every selected event at or below it is acked, skipped or parked."""
    last_position: int
    """The store's last position; `lag` is how far the checkpoint trails it."""
    lag: int
    in_flight: int
    parked: int
    consumers: list[ConsumerInfo]
    resolve_links: bool = False


class SubscriptionList(msgspec.Struct, kw_only=True):
    """`subscription_list` result."""

    subscriptions: list[SubscriptionInfo]


class SubscriptionDeleted(msgspec.Struct, kw_only=True):
    """`subscription_delete` result."""

    subscription: str
    deleted: bool = True


class AckResult(msgspec.Struct, kw_only=True):
    """How many of the positions were awaiting an answer (others were already settled)."""

    settled: int


class ReplayResult(msgspec.Struct, kw_only=True):
    """`replay_parked` result: the parked events now being delivered again."""

    replaying: int


class ParkedEvent(msgspec.Struct, kw_only=True):
    """One parked event in a `subscription_parked` page."""

    position: int
    reason: str
    parked: datetime


class ParkedPage(msgspec.Struct, kw_only=True):
    """`subscription_parked` result; `next` is the `after` of the next page (null: done)."""

    parked: list[ParkedEvent]
    next: int | None


class Receipt(msgspec.Struct, kw_only=True):
    """A consumer's reply to a delivery: it took the event, or is full (`accepted` false)."""

    consumer: str
    accepted: bool = True
