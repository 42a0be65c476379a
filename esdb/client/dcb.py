"""Dynamic consistency boundaries in the client: `dcb_append`, `dcb_read` (docs/dcb.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from typing import Literal

import msgspec

from esdb.client.connection import Requests
from esdb.client.events import JsonPayload, NewEvent, RecordedEvent
from esdb.client.requests import EventBody, event_bodies, ids_complete
from esdb.contracts.api import DcbAppendResult, DcbQueryIn, DcbQueryItemIn
from esdb.contracts.commands import DcbItem
from esdb.contracts.dcb import DCB_STREAM, matches
from esdb.contracts.subjects import Op, api_subject


@dataclass(frozen=True, slots=True)
class DcbEvent(NewEvent):
    """An event to append with `dcb_append`: a `NewEvent` with `tags`."""

    _: KW_ONLY
    tags: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class DcbQueryItem:
    """Events of one of `types` (any type when empty) that carry every one of `tags`."""

    types: Sequence[str] = ()
    tags: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class DcbQuery:
    """Events matching any of `items`; no items match every DCB event."""

    items: Sequence[DcbQueryItem] = ()

    def matches(self, event_type: str, tags: Iterable[str]) -> bool:
        """Whether an event of `event_type` with `tags` matches this query."""
        return matches(self.checked_items(), event_type, tags)

    def checked_items(self) -> tuple[DcbItem, ...]:
        """The items as a selector holds them."""
        return tuple(DcbItem(tuple(i.types), tuple(i.tags)) for i in self.items)

    def spec(self) -> DcbQueryIn:
        """The query as a subscription's selector carries it."""
        return DcbQueryIn(
            items=[DcbQueryItemIn(types=list(i.types), tags=list(i.tags)) for i in self.items]
        )


@dataclass(frozen=True, slots=True)
class DcbCondition:
    """Fail the append if an event after position `after` (None: any) matches the query."""

    fail_if_events_match: DcbQuery = field(default_factory=DcbQuery)
    after: int | None = None


class DcbRecordedEvent(msgspec.Struct, JsonPayload, frozen=True, kw_only=True):
    """A DCB event as read back; `data` and `metadata` are the stored bytes."""

    position: int
    type: str
    data: bytes
    metadata: bytes
    tags: list[str]
    event_id: str
    content_type: str
    created: datetime
    version: int

    def recorded(self) -> RecordedEvent:
        """The event as stream reads and subscriptions give it (stream `$dcb`)."""
        return RecordedEvent(
            event_id=self.event_id,
            stream_id=DCB_STREAM,
            version=self.version,
            position=self.position,
            event_type=self.type,
            data=self.data,
            metadata=self.metadata,
            content_type=self.content_type,
            created=self.created,
            tags=self.tags,
        )


class DcbReadPage(msgspec.Struct, frozen=True, kw_only=True):
    """Matching DCB events and `head`, the store's last position when read (None: empty);
    `more`: more may match after the last event (the page is full, or was cut to fit)."""

    events: list[DcbRecordedEvent]
    head: int | None
    more: bool = False


class _QueryItemBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    types: list[str] = []
    tags: list[str] = []


class _QueryBody(msgspec.Struct, kw_only=True):
    items: list[_QueryItemBody]


class _ConditionBody(msgspec.Struct, kw_only=True):
    fail_if_events_match: _QueryBody
    after: int | None = None


class _DcbEventBody(EventBody, kw_only=True, omit_defaults=True):
    tags: list[str] = []


class _AppendBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`contracts.api.DcbAppendRequest` with byte payloads."""

    events: list[_DcbEventBody]
    condition: _ConditionBody | None = None
    timeout_ms: int | None = None


class _ReadBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`contracts.api.DcbReadRequest`."""

    query: _QueryBody | None = None
    after: int | None = None
    limit: int = 100
    direction: str = "forward"
    min_position: int | None = None
    timeout_ms: int | None = None


_appended = msgspec.msgpack.Decoder(DcbAppendResult)
_page = msgspec.msgpack.Decoder(DcbReadPage)


def query_body(query: DcbQuery) -> _QueryBody:
    """The wire form of a query."""
    return _QueryBody(
        items=[_QueryItemBody(types=list(i.types), tags=list(i.tags)) for i in query.items]
    )


class DcbOperations:
    """Mixed into `Client`: DCB appends and reads on the client's store."""

    _connection: Requests
    store: str

    async def dcb_append(
        self, events: Iterable[DcbEvent], condition: DcbCondition | None = None
    ) -> int:
        """Append tagged events, all or none, unless an event recorded after
        `condition.after` matches `condition.fail_if_events_match`; then raises
        `AppendConditionFailedError` (its `position`: the first match) and writes nothing.
        Returns the position of the last event. Events get fresh ids (when retries are on),
        so a retry cannot store them twice."""
        events = list(events)
        plain = event_bodies(events, stamp_ids=self._connection.retry.enabled)
        bodies = [
            _DcbEventBody(**msgspec.structs.asdict(body), tags=list(event.tags))
            for body, event in zip(plain, events, strict=True)
        ]
        request = _AppendBody(
            events=bodies,
            condition=None
            if condition is None
            else _ConditionBody(
                fail_if_events_match=query_body(condition.fail_if_events_match),
                after=condition.after,
            ),
            timeout_ms=self._connection.server_timeout_ms,
        )
        result = await self._connection.request(
            api_subject(self.store, Op.DCB_APPEND),
            request,
            _appended,
            write=True,
            idempotent=ids_complete(plain),
        )
        return result.position

    async def dcb_read(
        self,
        query: DcbQuery | None = None,
        *,
        after: int | None = None,
        limit: int = 100,
        direction: Literal["forward", "backward"] = "forward",
        min_position: int | None = None,
    ) -> DcbReadPage:
        """One page of DCB events matching `query` (None: all) beyond position `after`, and
        the store's head; `min_position` waits until the serving node has applied it."""
        request = _ReadBody(
            query=None if query is None else query_body(query),
            after=after,
            limit=limit,
            direction=direction,
            min_position=min_position,
            timeout_ms=self._connection.server_timeout_ms,
        )
        return await self._connection.request(
            api_subject(self.store, Op.DCB_READ), request, _page, idempotent=True
        )
