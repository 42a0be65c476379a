"""The names of KurrentDB's Python client (`kurrentdbclient`) for what esdb does too, so code
written for it moves over with few changes: `append_to_stream`, `get_stream`,
`subscribe_to_all`/`_to_stream`, `create_subscription_to_all`/`_to_stream`,
`read_subscription_to_all`/`_to_stream` (with `ack`/`nack`), `get_current_version`,
`get_commit_position`, `get_subscription_info`, `replay_parked_events`, and `StreamState`.

They are thin wrappers over the client's own operations, and esdb's semantics hold: a stream's
version is kurrentdb's stream position, a global position its commit position. Events come
back as `KurrentRecordedEvent`s, which answer to kurrentdbclient's attribute names as well.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, cast

import msgspec

from esdb.client.consumer import NackAction, PersistentEvent
from esdb.client.consumer import PersistentSubscription as GroupConsumer
from esdb.client.events import ExpectedVersion, NewEvent, RecordedEvent
from esdb.client.opening import ClosedOnExit
from esdb.client.subscription import CaughtUp, StartPosition, Subscription
from esdb.contracts.errors import InvalidRequest, StreamNotFound, WrongExpectedVersion
from esdb.contracts.subscriptions import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MESSAGE_TIMEOUT_MS,
    SubscriptionInfo,
)

if TYPE_CHECKING:
    from esdb.client.client import Client

WrongCurrentVersionError = WrongExpectedVersion
"""kurrentdbclient's name for `WrongExpectedVersionError`."""

_PAGE = 1000
"""Events per read when `get_stream` fetches a whole stream."""


class StreamState(StrEnum):
    """kurrentdbclient's `current_version` values other than an exact version; each is also
    the esdb `expected_version` of the same meaning."""

    ANY = "any"
    NO_STREAM = "no_stream"
    EXISTS = "stream_exists"


CurrentVersion = int | StreamState


def expected_version(current_version: CurrentVersion) -> ExpectedVersion:
    """The esdb `expected_version` for a kurrentdbclient `current_version`."""
    if isinstance(current_version, StreamState):
        return cast(ExpectedVersion, current_version.value)
    if isinstance(current_version, int) and not isinstance(current_version, bool):
        return current_version
    raise InvalidRequest(
        f"current_version must be a StreamState or a version, not {current_version!r}",
        field="current_version",
    )


class KurrentRecordedEvent(RecordedEvent, frozen=True, kw_only=True):
    """A `RecordedEvent` that also answers to kurrentdbclient's names (`type`, `id`,
    `stream_name`, `stream_position`, `commit_position`, `recorded_at`); from a persistent
    subscription it carries `retry_count` (0 on the first delivery)."""

    retry_count: int | None = None

    @property
    def type(self) -> str:
        """The event type (`event_type`)."""
        return self.event_type

    @property
    def id(self) -> uuid.UUID:
        """The event id (`event_id`) as a UUID."""
        return uuid.UUID(self.event_id)

    @property
    def ack_id(self) -> uuid.UUID:
        """The id that `ack` and `nack` take (the event id)."""
        return self.id

    @property
    def stream_name(self) -> str:
        """The stream (`stream_id`)."""
        return self.stream_id

    @property
    def stream_position(self) -> int:
        """The version in its stream (`version`)."""
        return self.version

    @property
    def commit_position(self) -> int:
        """The global position (`position`)."""
        return self.position

    @property
    def recorded_at(self) -> datetime:
        """When it was stored (`created`)."""
        return self.created


def as_kurrent(event: RecordedEvent, retry_count: int | None = None) -> KurrentRecordedEvent:
    """`event` with kurrentdbclient's attribute names too."""
    if isinstance(event, KurrentRecordedEvent) and retry_count is None:
        return event
    return KurrentRecordedEvent(**msgspec.structs.asdict(event), retry_count=retry_count)


EventFilter = Callable[[RecordedEvent], bool]


def event_filter(
    include: Sequence[str], exclude: Sequence[str], by_stream_name: bool
) -> EventFilter | None:
    """kurrentdbclient's filter: events whose type (or stream) fully matches one of the
    `include` patterns, or, when there are none, matches none of the `exclude` patterns."""
    patterns = include or exclude
    if not patterns:
        return None
    field = "filter_include" if include else "filter_exclude"
    try:
        regex = re.compile("|".join(f"(?:{p})" for p in patterns))
    except re.error as e:
        raise InvalidRequest(f"{field} is not a valid regular expression: {e}", field=field) from e

    def keep(event: RecordedEvent) -> bool:
        matched = regex.fullmatch(event.stream_id if by_stream_name else event.event_type)
        return (matched is not None) == bool(include)

    return keep


class KurrentCatchupSubscription(ClosedOnExit):
    """kurrentdbclient's catch-up subscription over an esdb `Subscription`: events (and, when
    asked for, one `CaughtUp`), `async for` them; `stop()` ends it."""

    def __init__(
        self,
        subscription: Subscription,
        *,
        include_caught_up: bool = False,
        keep: EventFilter | None = None,
    ) -> None:
        self._subscription = subscription
        self._include_caught_up = include_caught_up
        self._keep = keep

    def __aiter__(self) -> KurrentCatchupSubscription:
        return self

    async def __anext__(self) -> KurrentRecordedEvent | CaughtUp:
        while True:
            item = await anext(self._subscription)
            if isinstance(item, CaughtUp):
                if self._include_caught_up:
                    return item
            elif self._keep is None or self._keep(item):
                return as_kurrent(item)

    async def stop(self) -> None:
        """End the subscription (kurrentdbclient's name for `close`)."""
        await self.close()

    async def close(self) -> None:
        """End the subscription; iteration stops."""
        await self._subscription.close()


AckItem = RecordedEvent | PersistentEvent | uuid.UUID | str | int
"""What `ack` and `nack` take: a delivered event, its id, or its position."""


class KurrentPersistentSubscription(ClosedOnExit):
    """kurrentdbclient's persistent subscription over an esdb group consumer: `async for`
    events (`KurrentRecordedEvent`s with `retry_count`), then `await ack(event)` or
    `await nack(event, action=...)`; `stop()` leaves the group."""

    def __init__(self, consumer: GroupConsumer) -> None:
        self._consumer = consumer
        # Event id -> position of each delivered event not yet settled, so that acks and nacks
        # may name events by id as kurrentdbclient's do.
        self._positions: dict[str, int] = {}

    @property
    def subscription_id(self) -> str:
        """This consumer's id within its group."""
        return self._consumer.consumer

    def __aiter__(self) -> KurrentPersistentSubscription:
        return self

    async def __anext__(self) -> KurrentRecordedEvent:
        delivered = await anext(self._consumer)
        self._positions[delivered.event.event_id] = delivered.position
        return as_kurrent(delivered.event, retry_count=delivered.attempt - 1)

    async def ack(self, item: AckItem) -> None:
        """Settle a delivered event (given as the event, its id or its position)."""
        self._consumer.ack(self._position(item))

    async def nack(
        self, item: AckItem, action: NackAction | Literal["unknown"] = "retry", reason: str = ""
    ) -> None:
        """Report a failed event: `retry`, `park`, `skip` or `stop` (`unknown` is `retry`)."""
        settled = "retry" if action == "unknown" else action
        self._consumer.nack(self._position(item), action=settled, reason=reason)

    async def flush(self) -> None:
        """Wait until every ack and nack so far has reached the group."""
        await self._consumer.flush()

    async def stop(self) -> None:
        """Leave the group (kurrentdbclient's name for `close`)."""
        await self.close()

    async def close(self) -> None:
        """Leave the group: unsettled events go back to it; buffered settlements are sent."""
        self._positions.clear()
        await self._consumer.close()

    def _position(self, item: AckItem) -> int:
        if isinstance(item, int) and not isinstance(item, bool):
            return item
        if isinstance(item, RecordedEvent | PersistentEvent):
            event_id = item.event.event_id if isinstance(item, PersistentEvent) else item.event_id
            self._positions.pop(event_id, None)
            return item.position
        try:
            event_id = str(uuid.UUID(str(item)))
        except ValueError as e:
            raise InvalidRequest(f"{item!r} is not an event id", field="event_id") from e
        position = self._positions.pop(event_id, None)
        if position is None:
            raise InvalidRequest(
                f"event {event_id} was not delivered to this consumer, or is settled already",
                field="event_id",
            )
        return position


class KurrentNames:
    """Mixed into `Client`: kurrentdbclient's names for its operations."""

    def _client(self) -> Client:
        return cast("Client", self)

    async def append_to_stream(
        self,
        stream_name: str,
        *,
        current_version: CurrentVersion,
        events: NewEvent | Iterable[NewEvent],
    ) -> int:
        """Append one event or several to a stream at `current_version` (a version or a
        `StreamState`); returns the commit position of the last. Raises
        `WrongCurrentVersionError` (= `WrongExpectedVersionError`) when the stream is elsewhere."""
        batch = [events] if isinstance(events, NewEvent) else list(events)
        result = await self._client().append(
            stream_name, batch, expected_version=expected_version(current_version)
        )
        return result.last_position

    async def get_stream(
        self,
        stream_name: str,
        *,
        stream_position: int | None = None,
        backwards: bool = False,
        limit: int = sys.maxsize,
    ) -> tuple[KurrentRecordedEvent, ...]:
        """The events of a stream from `stream_position` (inclusive; by default its first
        event, or its last when `backwards`), at most `limit`; `StreamNotFoundError` if it
        has none."""
        if limit < 1:
            return ()
        start: int | Literal["start", "end"]
        start = stream_position if stream_position is not None else "end" if backwards else "start"
        events: list[KurrentRecordedEvent] = []
        async for event in self._client().iter_stream(
            stream_name,
            from_=start,
            direction="backward" if backwards else "forward",
            page_size=min(limit, _PAGE),
        ):
            events.append(as_kurrent(event))
            if len(events) >= limit:
                break
        return tuple(events)

    async def get_current_version(self, stream_name: str) -> int | Literal[StreamState.NO_STREAM]:
        """The version of a stream's last event, or `StreamState.NO_STREAM`."""
        try:
            info = await self._client().stream_info(stream_name)
        except StreamNotFound:
            return StreamState.NO_STREAM
        return info.version if info.version >= 0 else StreamState.NO_STREAM

    async def get_commit_position(self) -> int:
        """The position of the store's last event (0 when it has none)."""
        page = await self._client().read_all(from_position="end", direction="backward", limit=1)
        return page.events[0].position if page.events else 0

    async def subscribe_to_all(
        self,
        *,
        commit_position: int | None = None,
        from_end: bool = False,
        filter_include: Sequence[str] = (),
        filter_exclude: Sequence[str] = (),
        filter_by_stream_name: bool = False,
        include_caught_up: bool = False,
    ) -> KurrentCatchupSubscription:
        """A catch-up subscription to every event of the store after `commit_position` (from
        the first event by default, from now on with `from_end`), then live ones. The
        `filter_include`/`filter_exclude` regular expressions select by event type (or stream
        name) on the client; `include_caught_up` yields `CaughtUp` between history and live."""
        start: StartPosition = "start"
        if commit_position is not None:
            start = commit_position + 1
        elif from_end:
            start = "end"
        keep = event_filter(filter_include, filter_exclude, filter_by_stream_name)
        subscription = await self._client().subscribe(all=True, from_position=start)
        return KurrentCatchupSubscription(
            subscription, include_caught_up=include_caught_up, keep=keep
        )

    async def subscribe_to_stream(
        self,
        stream_name: str,
        *,
        stream_position: int | None = None,
        from_end: bool = False,
        include_caught_up: bool = False,
    ) -> KurrentCatchupSubscription:
        """A catch-up subscription to one stream's events after `stream_position` (from its
        first event by default, from now on with `from_end`), then live ones."""
        client = self._client()
        if stream_position is not None:
            subscribing = client.subscribe(stream=stream_name, from_version=stream_position + 1)
        else:
            subscribing = client.subscribe(
                stream=stream_name, from_position="end" if from_end else "start"
            )
        return KurrentCatchupSubscription(await subscribing, include_caught_up=include_caught_up)

    async def create_subscription_to_all(
        self,
        group_name: str,
        *,
        from_end: bool = False,
        commit_position: int | None = None,
        filter_include: Sequence[str] = (),
        filter_exclude: Sequence[str] = (),
        filter_by_stream_name: bool = False,
        message_timeout: float = DEFAULT_MESSAGE_TIMEOUT_MS / 1000,
        max_retry_count: int = DEFAULT_MAX_RETRIES,
    ) -> SubscriptionInfo:
        """Create persistent subscription (consumer group) `group_name` over every event of
        the store from `commit_position` (inclusive; the first event by default, or the end
        with `from_end`). Regular-expression filters are not supported by groups: create
        one with `create_subscription(name, category=... | event_type=... | pattern=...)`."""
        if filter_include or filter_exclude or filter_by_stream_name:
            raise InvalidRequest(
                "persistent subscriptions select with category=, event_type=, pattern= or "
                "stream= (see create_subscription), not regular expressions",
                field="filter_include" if filter_include else "filter_exclude",
            )
        start: int | Literal["start", "end"] = "start"
        if commit_position is not None:
            start = max(1, commit_position)
        elif from_end:
            start = "end"
        return await self._client().create_subscription(
            group_name,
            all=True,
            start=start,
            message_timeout_ms=round(message_timeout * 1000),
            max_retries=max_retry_count,
        )

    async def create_subscription_to_stream(
        self,
        group_name: str,
        stream_name: str,
        *,
        from_end: bool = False,
        stream_position: int | None = None,
        message_timeout: float = DEFAULT_MESSAGE_TIMEOUT_MS / 1000,
        max_retry_count: int = DEFAULT_MAX_RETRIES,
    ) -> SubscriptionInfo:
        """Create persistent subscription `group_name` over one stream from `stream_position`
        (inclusive; its first event by default, or the end with `from_end`). Group names
        are unique in a store, whichever stream they follow."""
        client = self._client()
        start: int | Literal["start", "end"] = "end" if from_end else "start"
        if stream_position is not None:
            try:
                page = await client.read_stream(stream_name, from_=stream_position, limit=1)
            except StreamNotFound:
                page = None
            start = page.events[0].position if page is not None and page.events else "end"
        return await client.create_subscription(
            group_name,
            stream=stream_name,
            start=start,
            message_timeout_ms=round(message_timeout * 1000),
            max_retries=max_retry_count,
        )

    async def read_subscription_to_all(
        self, group_name: str, *, max_in_flight: int | None = None
    ) -> KurrentPersistentSubscription:
        """Join persistent subscription `group_name` as a consumer."""
        return await self._read_subscription(group_name, max_in_flight)

    async def read_subscription_to_stream(
        self, group_name: str, stream_name: str, *, max_in_flight: int | None = None
    ) -> KurrentPersistentSubscription:
        """Join persistent subscription `group_name` as a consumer (`stream_name` is the
        stream it follows; the group name alone identifies it)."""
        return await self._read_subscription(group_name, max_in_flight)

    async def _read_subscription(
        self, group_name: str, max_in_flight: int | None
    ) -> KurrentPersistentSubscription:
        client = self._client()
        consuming = (
            client.consume(group_name)
            if max_in_flight is None
            else client.consume(group_name, max_in_flight=max_in_flight)
        )
        return KurrentPersistentSubscription(await consuming)

    async def get_subscription_info(
        self, group_name: str, stream_name: str | None = None
    ) -> SubscriptionInfo:
        """A persistent subscription's checkpoint, lag and consumers (`subscription_info`)."""
        return await self._client().subscription_info(group_name)

    async def replay_parked_events(self, group_name: str, stream_name: str | None = None) -> int:
        """Deliver a persistent subscription's parked events again (`replay_parked`)."""
        return await self._client().replay_parked(group_name)
