"""Persistent subscription operations of `Client` (consumer groups with ack and nack)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Literal

import msgspec

from esdb.client.connection import Requests, live
from esdb.client.consumer import Consuming
from esdb.client.dcb import DcbQuery
from esdb.client.watch import Watching
from esdb.contracts.payload_filter import PayloadCondition
from esdb.contracts.subjects import Op, api_subject
from esdb.contracts.subscriptions import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MESSAGE_TIMEOUT_MS,
    ParkedEvent,
    ParkedListRequest,
    ParkedPage,
    ReplayResult,
    SelectorSpec,
    SubscriptionCreateRequest,
    SubscriptionDeleted,
    SubscriptionInfo,
    SubscriptionList,
    SubscriptionListRequest,
    SubscriptionRequest,
)

_info = msgspec.msgpack.Decoder(SubscriptionInfo)
_list = msgspec.msgpack.Decoder(SubscriptionList)
_deleted = msgspec.msgpack.Decoder(SubscriptionDeleted)
_replay = msgspec.msgpack.Decoder(ReplayResult)
_parked = msgspec.msgpack.Decoder(ParkedPage)


def selector_spec(
    *,
    stream: str | None = None,
    category: str | None = None,
    event_type: str | None = None,
    pattern: str | None = None,
    all: bool = False,
    payload: Sequence[PayloadCondition | dict[str, object]] | None = None,
    query: DcbQuery | None = None,
) -> SelectorSpec:
    """A selector from keyword arguments; `payload` conditions as structs or plain dicts;
    `query` selects the DCB events that match it."""
    conditions = None
    if payload is not None:
        conditions = [
            c if isinstance(c, PayloadCondition) else msgspec.convert(c, PayloadCondition)
            for c in payload
        ]
    return SelectorSpec(
        stream=stream,
        category=category,
        event_type=event_type,
        pattern=pattern,
        all=all,
        payload=conditions,
        query=None if query is None else query.spec(),
    )


class PersistentOperations:
    """Mixed into `Client`: persistent subscriptions and watches of the client's store."""

    _connection: Requests
    store: str

    def _subject(self, op: str) -> str:
        return api_subject(self.store, op)

    async def create_subscription(
        self,
        name: str,
        *,
        stream: str | None = None,
        category: str | None = None,
        event_type: str | None = None,
        pattern: str | None = None,
        all: bool = False,
        payload: Sequence[PayloadCondition | dict[str, object]] | None = None,
        query: DcbQuery | None = None,
        start: int | Literal["start", "end"] = "start",
        message_timeout_ms: int = DEFAULT_MESSAGE_TIMEOUT_MS,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        resolve_links: bool = False,
    ) -> SubscriptionInfo:
        """Create consumer group `name` over the selected events from `start` (a position,
        the store's first event, or its end); raises `AlreadyExists` if it exists. With
        `resolve_links`, link events come as the events they point to, at their positions."""
        request = SubscriptionCreateRequest(
            subscription=name,
            selector=selector_spec(
                stream=stream,
                category=category,
                event_type=event_type,
                pattern=pattern,
                all=all,
                payload=payload,
                query=query,
            ),
            start=start,
            message_timeout_ms=message_timeout_ms,
            max_retries=max_retries,
            max_in_flight=max_in_flight,
            timeout_ms=self._connection.server_timeout_ms,
            resolve_links=resolve_links,
        )
        return await self._connection.request(
            self._subject(Op.SUBSCRIPTION_CREATE), request, _info, write=True
        )

    async def delete_subscription(self, name: str) -> None:
        """Delete a group with its checkpoint and parked events; `NotFound` if none."""
        request = SubscriptionRequest(
            subscription=name, timeout_ms=self._connection.server_timeout_ms
        )
        await self._connection.request(
            self._subject(Op.SUBSCRIPTION_DELETE), request, _deleted, write=True
        )

    async def list_subscriptions(self) -> list[SubscriptionInfo]:
        """Every group of the store."""
        request = SubscriptionListRequest(timeout_ms=self._connection.server_timeout_ms)
        result = await self._connection.request(
            self._subject(Op.SUBSCRIPTION_LIST), request, _list, idempotent=True
        )
        return result.subscriptions

    async def subscription_info(self, name: str) -> SubscriptionInfo:
        """A group's checkpoint, lag, in-flight and parked counts, and consumers."""
        request = SubscriptionRequest(
            subscription=name, timeout_ms=self._connection.server_timeout_ms
        )
        return await self._connection.request(
            self._subject(Op.SUBSCRIPTION_INFO), request, _info, idempotent=True
        )

    async def replay_parked(self, name: str) -> int:
        """Deliver a group's parked events again; how many there are."""
        request = SubscriptionRequest(
            subscription=name, timeout_ms=self._connection.server_timeout_ms
        )
        result = await self._connection.request(
            self._subject(Op.REPLAY_PARKED), request, _replay, idempotent=True
        )
        return result.replaying

    async def list_parked(self, name: str, *, after: int = 0, limit: int = 100) -> ParkedPage:
        """One page of a group's parked events, by position, after `after`."""
        request = ParkedListRequest(
            subscription=name,
            after=after,
            limit=limit,
            timeout_ms=self._connection.server_timeout_ms,
        )
        return await self._connection.request(
            self._subject(Op.SUBSCRIPTION_PARKED), request, _parked, idempotent=True
        )

    async def iter_parked(self, name: str, *, page_size: int = 100) -> AsyncIterator[ParkedEvent]:
        """Every parked event of a group, a page at a time."""
        after: int | None = 0
        while after is not None:
            page = await self.list_parked(name, after=after, limit=page_size)
            for parked in page.parked:
                yield parked
            after = page.next

    def consume(
        self,
        name: str,
        *,
        consumer: str | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> Consuming:
        """Join group `name` as a consumer: `async with client.consume(name) as sub:
        async for delivered in sub: ...; sub.ack(delivered)`. It holds at most
        `max_in_flight` unsettled events; the rest go to the group's other consumers."""
        return Consuming(live(self._connection), self.store, name, consumer, max_in_flight)

    def watch(
        self,
        *,
        stream: str | None = None,
        category: str | None = None,
        event_type: str | None = None,
        pattern: str | None = None,
        all: bool = False,
        payload: Sequence[PayloadCondition | dict[str, object]] | None = None,
        query: DcbQuery | None = None,
        after: int | None = None,
    ) -> Watching:
        """Events the server selects, `payload` conditions included, as they are committed
        (after position `after` when given): `async with client.watch(...) as w: async for
        event in w`. Kept alive across leader changes with no gap and no duplicate."""
        spec = selector_spec(
            stream=stream,
            category=category,
            event_type=event_type,
            pattern=pattern,
            all=all,
            payload=payload,
            query=query,
        )
        return Watching(live(self._connection), self.store, spec, after)
