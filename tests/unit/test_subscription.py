"""Subscriptions without NATS: selectors, fan-out decoding, and the catch-up state machine
over an in-memory store whose reader can lag, fed the emitter's own messages."""

from __future__ import annotations

import asyncio
import re
from typing import Literal

import msgspec
import pytest

from esdb.client import CaughtUp, InvalidRequest, RecordedEvent, SubscriptionDropped
from esdb.client.events import ReadAllPage, ReadStreamPage, event_from_json
from esdb.client.live import LiveFeed, LiveMessage
from esdb.client.subscription import StartPosition, Subscription
from esdb.contracts.api import ReadFilter
from esdb.contracts.errors import StreamNotFound
from esdb.contracts.selectors import Selector, select, tokens_match
from esdb.contracts.topics import event_subject
from esdb.shared.storage.records import EventRecord
from esdb.shared.wire import Codec, event_out
from tests.builders import NOW_US, event_id
from tests.fanout_frames import fanout_message

STORE = "default"
_as_recorded = msgspec.msgpack.Decoder(RecordedEvent)
_encode = msgspec.msgpack.Encoder()


def _recorded(record: EventRecord) -> RecordedEvent:
    """What the client gets for `record` from a msgpack read."""
    return _as_recorded.decode(_encode.encode(event_out(record, Codec.MSGPACK)))


class FakeStore:
    """A store and one reader over it: the reader has applied `applied` positions, and a
    read with `min_position` makes it catch up that far (as the real reader waits)."""

    def __init__(self) -> None:
        self.records: list[EventRecord] = []
        self.applied = 0
        self.reads = 0

    def append(
        self,
        stream: str,
        type: str = "Happened",
        *,
        data: bytes = b'{"n":1}',
        content_type: str = "application/json",
        applied: bool = True,
    ) -> EventRecord:
        version = sum(1 for r in self.records if r.stream == stream)
        position = len(self.records) + 1
        record = EventRecord(
            event_id=event_id(),
            stream=stream,
            version=version,
            position=position,
            type=type,
            data=data,
            metadata=b"",
            content_type=content_type,
            created_us=NOW_US + position,
        )
        self.records.append(record)
        if applied:
            self.applied = position
        return record

    def _visible(self, min_position: int | None) -> list[EventRecord]:
        if min_position is not None:
            self.applied = max(self.applied, min(min_position, len(self.records)))
        self.reads += 1
        return self.records[: self.applied]

    async def read_all(
        self,
        *,
        from_position: int | Literal["start", "end"] = "start",
        direction: Literal["forward", "backward"] = "forward",
        limit: int = 100,
        filter: ReadFilter | None = None,
        min_position: int | None = None,
    ) -> ReadAllPage:
        visible = self._visible(min_position)
        if direction == "backward":
            assert from_position == "end"
            return ReadAllPage(events=[_recorded(r) for r in visible[-limit:]], next_position=None)
        start = 1 if from_position == "start" else int(from_position)
        matching = [r for r in visible if r.position >= start and _passes(filter, r)]
        page = matching[:limit]
        more = len(matching) > limit
        return ReadAllPage(
            events=[_recorded(r) for r in page],
            next_position=page[-1].position + 1 if more else None,
        )

    async def read_stream(
        self,
        stream: str,
        *,
        from_: int | Literal["start", "end"] = "start",
        direction: Literal["forward", "backward"] = "forward",
        limit: int = 100,
        min_position: int | None = None,
    ) -> ReadStreamPage:
        events = [r for r in self._visible(min_position) if r.stream == stream]
        if not events:
            raise StreamNotFound(f"no stream {stream}")
        start = 0 if from_ == "start" else int(from_)
        page = [r for r in events if r.version >= start][:limit]
        more = bool(page) and page[-1].version < events[-1].version
        return ReadStreamPage(
            events=[_recorded(r) for r in page],
            next=page[-1].version + 1 if more else None,
            last_version=events[-1].version,
        )


def _passes(flt: ReadFilter | None, record: EventRecord) -> bool:
    if flt is None:
        return True
    return (
        (flt.category is None or record.stream.split("-", 1)[0] == flt.category)
        and (flt.event_types is None or record.type in flt.event_types)
        and (flt.stream_prefix is None or record.stream.startswith(flt.stream_prefix))
        and (flt.stream_regex is None or re.search(flt.stream_regex, record.stream) is not None)
    )


def publish(feed: LiveFeed, selector: Selector, record: EventRecord) -> None:
    """The emitter's message for `record`, delivered if the selector's subject matches."""
    subject, payload, headers = fanout_message(STORE, record)
    assert subject == event_subject(STORE, record.stream, record.type)
    pattern = tuple(selector.subject.split(".")[3:])
    if tokens_match(pattern, subject.split(".")[3:]):
        feed.push(LiveMessage(int(headers["Esdb-Position"]), payload))


async def take(subscription: Subscription, count: int) -> list[RecordedEvent | CaughtUp]:
    items: list[RecordedEvent | CaughtUp] = []
    async with asyncio.timeout(2):
        while len(items) < count:
            items.append(await anext(subscription))
    return items


def summary(items: list[RecordedEvent | CaughtUp]) -> list[object]:
    """Positions of events, and `("caught_up", N)` for the marker."""
    return [
        ("caught_up", item.position) if isinstance(item, CaughtUp) else item.position
        for item in items
    ]


async def open_subscription(
    store: FakeStore,
    selector: Selector,
    *,
    from_position: StartPosition | None = None,
    from_version: int | None = None,
    page_size: int = 2,
) -> tuple[Subscription, LiveFeed]:
    feed = LiveFeed(buffer_size=100)
    subscription = Subscription(
        selector,
        feed,
        store,
        from_position=from_position,
        from_version=from_version,
        page_size=page_size,
    )
    await subscription.start()
    return subscription, feed


# Selectors


def test_select_takes_exactly_one_selector() -> None:
    with pytest.raises(InvalidRequest):
        select(STORE)
    with pytest.raises(InvalidRequest):
        select(STORE, stream="a-1", category="a")
    with pytest.raises(InvalidRequest):
        select(STORE, event_type="T", all=True)


def test_selectors_subjects_and_history_filters() -> None:
    assert select(STORE, stream="order-1.x").subject == "esdb.events.default.order.order-1%2Ex.*"
    category = select(STORE, category="order")
    assert category.subject == "esdb.events.default.order.>"
    assert category.filter == ReadFilter(category="order")
    kind = select(STORE, event_type="Order Placed")
    assert kind.subject == "esdb.events.default.*.*.Order%20Placed"
    assert kind.filter == ReadFilter(event_types=["Order Placed"])
    everything = select(STORE, all=True)
    assert (everything.subject, everything.filter, everything.dense) == (
        "esdb.events.default.>",
        None,
        True,
    )


def test_pattern_narrows_history_by_its_literal_tokens() -> None:
    pattern = select(STORE, pattern="order.*.Order%20Placed")
    assert pattern.subject == "esdb.events.default.order.*.Order%20Placed"
    assert pattern.filter == ReadFilter(category="order", event_types=["Order Placed"])
    assert pattern.matches("order-1", "Order Placed")
    assert not pattern.matches("order-1", "Paid")
    assert select(STORE, pattern="*.a%2Eb.>").filter == ReadFilter(
        stream_prefix="a.b", stream_regex=r"^a\.b$"
    )
    assert select(STORE, pattern=">").filter is None


@pytest.mark.parametrize("pattern", ["", "a..b", "a.>.b", "a.b*.c", "a.b.c.d", "a.b", "a.%ZZ.c"])
def test_patterns_that_cannot_match_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidRequest):
        select(STORE, pattern=pattern)


def test_tokens_match_like_nats() -> None:
    assert tokens_match(("a", "*", "c"), ["a", "b", "c"])
    assert not tokens_match(("a", "*"), ["a", "b", "c"])
    assert tokens_match(("a", ">"), ["a", "b", "c"])
    assert not tokens_match(("a", "b", ">"), ["a", "b"])


# Decoding the emitter's messages


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b'{"total":12.5,"name":"\xc3\xa9"}', "application/json"),
        (b"", "application/json"),
        (b"\x00\x01\xffraw", "application/octet-stream"),
        (b"", "application/octet-stream"),
    ],
)
def test_live_events_decode_to_what_reads_return(data: bytes, content_type: str) -> None:
    store = FakeStore()
    record = store.append("order-1", "Placed", data=data, content_type=content_type)
    _, payload, _ = fanout_message(STORE, record)
    assert event_from_json(payload) == _recorded(record)


# The state machine


async def test_transient_subscription_delivers_live_events_once_in_order() -> None:
    store = FakeStore()
    selector = select(STORE, category="order")
    subscription, feed = await open_subscription(store, selector)
    records = [store.append(f"order-{n}") for n in range(3)]
    for record in [records[0], records[1], records[0], records[2], records[1]]:
        publish(feed, selector, record)
    assert summary(await take(subscription, 3)) == [1, 2, 3]
    assert store.reads == 1  # a transient subscription only probes the head


async def test_transient_subscription_skips_events_committed_before_it_opened() -> None:
    store = FakeStore()
    selector = select(STORE, stream="order-1")
    before = store.append("order-1")
    subscription, feed = await open_subscription(store, selector)
    publish(feed, selector, before)  # the emitter publishes a little after the commit
    after = store.append("order-1")
    publish(feed, selector, after)
    assert summary(await take(subscription, 1)) == [after.position]


async def test_catch_up_covers_events_committed_while_reading_history() -> None:
    store = FakeStore()
    selector = select(STORE, category="order")
    for n in range(3):
        store.append(f"order-{n}")
        store.append(f"other-{n}")
    subscription, feed = await open_subscription(store, selector, from_position=1)
    # Committed and published after the subscription started: one the history read will
    # see (so it arrives twice), one committed after the history read ended.
    seen = store.append("order-8")
    unseen = store.append("order-9", applied=False)
    publish(feed, selector, seen)
    publish(feed, selector, unseen)
    items = await take(subscription, 6)
    assert summary(items) == [1, 3, 5, 7, ("caught_up", 7), 8]
    newer = store.append("order-10")
    publish(feed, selector, newer)
    assert summary(await take(subscription, 1)) == [9]


async def test_catch_up_reads_what_a_lagging_reader_had_not_applied() -> None:
    store = FakeStore()
    selector = select(STORE, category="order")
    store.append("order-1")
    # Committed and published before the subscription existed; this reader has not seen it.
    store.append("order-2", applied=False)
    store.append("noise-1", applied=False)
    subscription, feed = await open_subscription(store, selector, from_position="start")
    assert summary(await take(subscription, 2)) == [1, ("caught_up", 1)]
    live = store.append("order-3", applied=False)
    publish(feed, selector, live)
    events = await take(subscription, 2)
    assert summary(events) == [2, 4]


async def test_catch_up_from_end_starts_after_the_head() -> None:
    store = FakeStore()
    selector = select(STORE, event_type="Paid")
    before = store.append("order-1", "Paid")
    subscription, feed = await open_subscription(store, selector, from_position="end")
    publish(feed, selector, before)  # published late, but committed before we started
    after = store.append("order-2", "Paid")
    publish(feed, selector, after)
    assert summary(await take(subscription, 2)) == [("caught_up", 1), 2]


async def test_stream_catch_up_from_a_version_and_from_a_position() -> None:
    store = FakeStore()
    for _ in range(4):
        store.append("order-1")
        store.append("order-2")
    by_version, _ = await open_subscription(store, select(STORE, stream="order-1"), from_version=2)
    assert summary(await take(by_version, 3)) == [5, 7, ("caught_up", 8)]
    by_position, _ = await open_subscription(
        store, select(STORE, stream="order-2"), from_position=3
    )
    assert summary(await take(by_position, 4)) == [4, 6, 8, ("caught_up", 8)]
    missing, _ = await open_subscription(store, select(STORE, stream="nope"), from_version=0)
    assert summary(await take(missing, 1)) == [("caught_up", 8)]


async def test_all_fills_a_gap_in_positions_from_the_store() -> None:
    store = FakeStore()
    selector = select(STORE, all=True)
    subscription, feed = await open_subscription(store, selector)
    records = [store.append(f"s-{n}") for n in range(5)]
    publish(feed, selector, records[0])
    publish(feed, selector, records[3])  # 2 and 3 were lost
    publish(feed, selector, records[4])
    assert summary(await take(subscription, 5)) == [1, 2, 3, 4, 5]


async def test_failover_republishing_is_dropped() -> None:
    store = FakeStore()
    selector = select(STORE, all=True)
    subscription, feed = await open_subscription(store, selector, from_position=1)
    records = [store.append(f"s-{n}") for n in range(4)]
    for record in records[:3] + records[1:]:  # a new leader resumes from its checkpoint
        publish(feed, selector, record)
    assert summary(await take(subscription, 5)) == [1, 2, 3, 4, ("caught_up", 4)]
    assert feed.get_nowait() is not None  # the live copies are still buffered...
    feed.push(LiveMessage(None, fanout_message(STORE, store.append("s-9"))[1]))
    assert summary(await take(subscription, 1)) == [5]  # ...and dropped as repeats


async def test_interruption_recovers_a_catch_up_from_the_store() -> None:
    store = FakeStore()
    selector = select(STORE, category="order")
    subscription, feed = await open_subscription(store, selector, from_position=1)
    assert summary(await take(subscription, 1)) == [("caught_up", 0)]
    first = store.append("order-1")
    publish(feed, selector, first)
    assert summary(await take(subscription, 1)) == [1]
    store.append("order-2")  # its live message is lost in a reconnect
    feed.reconnected()
    assert summary(await take(subscription, 1)) == [2]


async def test_interruption_drops_a_transient_filtered_subscription() -> None:
    store = FakeStore()
    selector = select(STORE, category="order")
    subscription, feed = await open_subscription(store, selector)
    publish(feed, selector, store.append("order-1"))
    assert summary(await take(subscription, 1)) == [1]
    feed.reconnected()
    with pytest.raises(SubscriptionDropped) as dropped:
        await take(subscription, 1)
    assert dropped.value.details == {"last_position": 1}


async def test_a_full_buffer_counts_as_an_interruption() -> None:
    feed = LiveFeed(buffer_size=2)
    for position in (1, 2, 3):
        feed.push(LiveMessage(position, b""))
    assert feed.take_interruption()
    assert [feed.get_nowait(), feed.get_nowait(), feed.get_nowait()] == [
        LiveMessage(1, b""),
        LiveMessage(2, b""),
        None,
    ]


async def test_close_ends_a_pending_iteration() -> None:
    store = FakeStore()
    subscription, _ = await open_subscription(store, select(STORE, all=True))

    async def drain() -> list[object]:
        return [item async for item in subscription]

    pending = asyncio.create_task(drain())
    await asyncio.sleep(0)  # let it block on the empty feed
    await subscription.close()
    async with asyncio.timeout(2):
        assert await pending == []
