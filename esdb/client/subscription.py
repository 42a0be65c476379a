"""Live and catch-up subscriptions over the leader-emitter's fan-out subjects.

A subscription delivers events in position order, each at most once: a message whose position
is not above the last delivered one is dropped, which absorbs the emitter's at-least-once
re-publishing after a failover.

Every subscription subscribes to its live subject (buffering what arrives) and then probes the
store's head. A transient subscription delivers live events above that head only: the emitter
publishes a few milliseconds after a commit, so without the probe an event appended just before
`subscribe` returned could still arrive.

Catch-up (`from_position` / `from_version`): as the live subject is subscribed *before* the store
is read, an event committed while history is being read is in the buffer if the read missed it.
Every history read waits for the probed head (`min_position`), whichever node's reader answers.
After history, `CaughtUp` is yielded, then the buffered and new live events above the last
delivered position.

One hole remains after that: an event published before the subscription existed but not yet
applied by the reader that answered (a follower's reader lags the leader). So the first live
event after a catch-up, at position B, is checked: if B - 1 is above what the store reads
covered, the store is read up to B - 1 (waiting for B - 1 to be applied) before B is delivered.

With `resolve_links`, each link event (`$>`, written by a projection's `linkTo`) is delivered
as the event it points to, read from the store, at the link's position; a link to an event no
longer readable is skipped.

Lost live messages (a full buffer, a NATS reconnect) are recovered from the store by catch-up
subscriptions and, when the selector is `all=True`, by any subscription: positions are dense
across a store, so a gap before an event shows a loss and is filled from `read_all`. For other
selectors positions are not consecutive, so a gap cannot be seen; a transient filtered
subscription that knows it lost messages raises `SubscriptionDropped` instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec

from esdb.client.connection import Connection
from esdb.client.dcb import DcbQuery, DcbQueryItem, DcbReadPage
from esdb.client.events import ReadAllPage, ReadStreamPage, RecordedEvent, event_from_json
from esdb.client.live import LiveFeed, LiveMessage, NatsFeed
from esdb.client.opening import ClosedOnExit, Opening
from esdb.contracts.api import ReadFilter
from esdb.contracts.errors import InvalidRequest, StreamDeleted, StreamNotFound, Unavailable
from esdb.contracts.projections import link_target
from esdb.contracts.selectors import Selector

StartPosition = int | Literal["start", "end"]
"""Where a catch-up subscription starts: a position (inclusive), the store's first event, or
its end (only events appended from now on, with a `CaughtUp` first)."""

DEFAULT_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Yielded once by a catch-up subscription when history is done: every selected event at
    or below `position` has been delivered, live events follow."""

    position: int


class SubscriptionDropped(Unavailable):
    """Live messages were lost (NATS reconnected, or the buffer overflowed) and a transient
    subscription cannot tell which. Every selected event up to `details["last_position"]` was
    delivered: subscribe again with `from_position=last_position + 1` to go on."""


class History(Protocol):
    """The store reads a subscription catches up with (`Client` is one)."""

    async def read_all(
        self,
        *,
        from_position: int | Literal["start", "end"] = "start",
        direction: Literal["forward", "backward"] = "forward",
        limit: int = 100,
        filter: ReadFilter | None = None,
        min_position: int | None = None,
    ) -> ReadAllPage: ...

    async def read_stream(
        self,
        stream: str,
        *,
        from_: int | Literal["start", "end"] = "start",
        direction: Literal["forward", "backward"] = "forward",
        limit: int = 100,
        min_position: int | None = None,
    ) -> ReadStreamPage: ...

    async def dcb_read(
        self,
        query: DcbQuery | None = None,
        *,
        after: int | None = None,
        limit: int = 100,
        direction: Literal["forward", "backward"] = "forward",
        min_position: int | None = None,
    ) -> DcbReadPage: ...


class Subscription(ClosedOnExit):
    """An async iterator of `RecordedEvent`s (and one `CaughtUp` for a catch-up
    subscription), in position order, without duplicates. Close it (or use `async with`)."""

    def __init__(
        self,
        selector: Selector,
        feed: LiveFeed,
        history: History,
        *,
        from_position: StartPosition | None = None,
        from_version: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        resolve_links: bool = False,
    ) -> None:
        _check_start(selector, from_position, from_version)
        self.selector = selector
        self._resolve_links = resolve_links
        self._feed = feed
        self._history = history
        self._page_size = page_size
        self._catch_up = from_position is not None or from_version is not None
        self._from_end = from_position == "end"
        # Everything at or below `_last` (and, in a stream, `_last_version`) is delivered or
        # skipped on purpose; positions are delivered strictly increasing.
        self._last = from_position - 1 if isinstance(from_position, int) else 0
        self._last_version = -1 if from_version is None else from_version - 1
        self._head = 0
        # Store reads have accounted for every selected event at or below `_verified`; None
        # once live delivery is trusted (a filtered selector after its first live event).
        self._verified: int | None = None
        self._events: AsyncIterator[RecordedEvent | CaughtUp] | None = None
        self._on_close: list[Callable[[], Awaitable[None]]] = []

    @property
    def last_position(self) -> int:
        """The position of the last event delivered (or skipped as below the start)."""
        return self._last

    async def start(self) -> None:
        """Probe the store's head (the live feed is already buffering): a transient
        subscription, or one from the end, delivers only what comes after it."""
        self._head = await self._probe_head()
        if self._from_end or not self._catch_up:
            self._last = max(self._last, self._head)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> RecordedEvent | CaughtUp:
        if self._feed.closed:
            raise StopAsyncIteration
        if self._events is None:
            self._events = self._run()
        while True:
            item = await anext(self._events)
            if not self._resolve_links or isinstance(item, CaughtUp):
                return item
            resolved = await self._resolved(item)
            if resolved is not None:
                return resolved

    async def _resolved(self, event: RecordedEvent) -> RecordedEvent | None:
        """The event a link points to, at the link's position (None: no longer readable);
        any other event as it is."""
        target = link_target(event.event_type, event.data)
        if target is None:
            return event
        stream, version = target
        try:
            page = await self._history.read_stream(
                stream, from_=version, limit=1, min_position=event.position
            )
        except (StreamNotFound, StreamDeleted):
            return None
        found = page.events[0] if page.events else None
        if found is None or found.version != version:
            return None
        return msgspec.structs.replace(found, position=event.position)

    async def close(self) -> None:
        """Stop delivering and unsubscribe; a pending `__anext__` ends the iteration."""
        self._feed.close()
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            await callback()

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run `await callback()` when the subscription closes."""
        self._on_close.append(callback)

    async def _run(self) -> AsyncIterator[RecordedEvent | CaughtUp]:
        if self._catch_up:
            if not self._from_end:
                async for event in self._read_store(after=self._last, min_position=self._head):
                    yield event
            self._verified = max(self._head, self._last)
            if self._feed.closed:
                return
            yield CaughtUp(self._verified)
        while not self._feed.closed:
            if self._feed.take_interruption():
                async for event in self._recover():
                    yield event
                continue
            message = await self._feed.get()
            if message is None:
                continue
            live = self._live_event(message)
            if live is None:
                continue
            if self._verified is not None and live.position - 1 > self._verified:
                async for earlier in self._read_store(
                    after=self._verified, min_position=live.position - 1, before=live.position
                ):
                    yield earlier
            self._verified = live.position if self.selector.dense else None
            self._delivered(live)
            yield live

    async def _recover(self) -> AsyncIterator[RecordedEvent]:
        """Live messages may be lost: re-read the store where we can, else report it."""
        if self._catch_up:
            head = await self._probe_head()
            after = self._last if self._verified is None else self._verified
            async for event in self._read_store(after=after, min_position=head):
                yield event
            self._verified = max(head, self._last)
        elif not self.selector.dense:
            raise SubscriptionDropped(
                "live events were lost (NATS reconnected or the subscriber fell behind); "
                "subscribe again from the last position",
                last_position=self._last,
            )
        # A dense (all=True) transient subscription fills the gap when the next event comes.

    def _live_event(self, message: LiveMessage) -> RecordedEvent | None:
        if message.position is not None and message.position <= self._last:
            return None  # a duplicate: decoding it is wasted work
        event = event_from_json(message.payload)
        if event.position <= self._last or (
            self.selector.stream is not None and event.version <= self._last_version
        ):
            return None
        if self.selector.query is not None and not self.selector.matches(
            event.stream_id, event.event_type, tuple(event.tags)
        ):
            return None  # the subject carries every DCB event: the query is checked here
        return event

    def _delivered(self, event: RecordedEvent) -> None:
        self._last = event.position
        self._last_version = event.version

    async def _read_store(
        self, *, after: int, min_position: int, before: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Selected events above `after` (and `_last`) and below `before`, from a reader that
        has applied `min_position`; each is marked delivered."""
        if self.selector.stream is not None:
            events = self._stream_events(min_position)
        elif self.selector.query is not None:
            events = self._dcb_events(after, min_position, before)
        else:
            events = self._all_events(after, min_position, before)
        async for event in events:
            if before is not None and event.position >= before:
                return
            if event.position <= self._last or not self.selector.matches(
                event.stream_id, event.event_type, tuple(event.tags)
            ):
                continue
            self._delivered(event)
            yield event
            if self._feed.closed:
                return

    async def _stream_events(self, min_position: int) -> AsyncIterator[RecordedEvent]:
        assert self.selector.stream is not None
        start: int | None = self._last_version + 1
        while start is not None:
            try:
                page = await self._history.read_stream(
                    self.selector.stream,
                    from_=start,
                    limit=self._page_size,
                    min_position=min_position or None,
                )
            except StreamNotFound:
                return
            for event in page.events:
                yield event
            start = page.next

    async def _all_events(
        self, after: int, min_position: int, before: int | None
    ) -> AsyncIterator[RecordedEvent]:
        start: int | None = after + 1
        while start is not None:
            limit = self._page_size
            if before is not None:
                limit = max(1, min(limit, before - start))
            page = await self._history.read_all(
                from_position=start,
                limit=limit,
                filter=self.selector.filter,
                min_position=min_position or None,
            )
            for event in page.events:
                yield event
            start = page.next_position
            if before is not None and start is not None and start >= before:
                return

    async def _dcb_events(
        self, after: int, min_position: int, before: int | None
    ) -> AsyncIterator[RecordedEvent]:
        """A query selector's history, through the store's DCB index (`dcb_read`)."""
        assert self.selector.query is not None
        query = DcbQuery([DcbQueryItem(item.types, item.tags) for item in self.selector.query])
        cursor = after
        while before is None or cursor + 1 < before:
            limit = self._page_size if before is None else min(self._page_size, before - cursor)
            page = await self._history.dcb_read(
                query, after=cursor, limit=limit, min_position=min_position or None
            )
            for event in page.events:
                yield event.recorded()
            if not page.more or not page.events:
                return
            cursor = page.events[-1].position

    async def _probe_head(self) -> int:
        page = await self._history.read_all(from_position="end", direction="backward", limit=1)
        return page.events[0].position if page.events else 0


class Subscribing(Opening[Subscription]):
    """A subscription being opened: await it for a `Subscription`, or use `async with`."""

    def __init__(
        self,
        connection: Connection,
        history: History,
        selector: Selector,
        *,
        from_position: StartPosition | None,
        from_version: int | None,
        buffer_size: int,
        page_size: int,
        opened: set[Subscription],
        resolve_links: bool = False,
    ) -> None:
        _check_start(selector, from_position, from_version)
        self._resolve_links = resolve_links
        self._connection = connection
        self._history = history
        self._selector = selector
        self._from_position = from_position
        self._from_version = from_version
        self._buffer_size = buffer_size
        self._page_size = page_size
        self._opened = opened

    async def _open(self) -> Subscription:
        live = await NatsFeed.open(self._connection, self._selector.subject, self._buffer_size)
        subscription = Subscription(
            self._selector,
            live.feed,
            self._history,
            from_position=self._from_position,
            from_version=self._from_version,
            page_size=self._page_size,
            resolve_links=self._resolve_links,
        )
        self._opened.add(subscription)

        async def forget() -> None:
            self._opened.discard(subscription)
            await live.close()

        subscription.on_close(forget)
        try:
            await subscription.start()
        except BaseException:
            await subscription.close()
            raise
        return subscription


def _check_start(
    selector: Selector, from_position: StartPosition | None, from_version: int | None
) -> None:
    if from_version is not None:
        if selector.stream is None:
            raise InvalidRequest("from_version needs a stream selector", field="from_version")
        if from_position is not None:
            raise InvalidRequest(
                "give from_position or from_version, not both", field="from_version"
            )
        if from_version < 0:
            raise InvalidRequest("from_version must be >= 0", field="from_version")
    if isinstance(from_position, int) and from_position < 1:
        raise InvalidRequest(
            "from_position must be >= 1 (positions start at 1)", field="from_position"
        )
    if not isinstance(from_position, int | None) and from_position not in ("start", "end"):
        raise InvalidRequest(
            "from_position must be a position, 'start' or 'end'", field="from_position"
        )
