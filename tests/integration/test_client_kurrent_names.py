"""kurrentdbclient's names against a real stack: code written for KurrentDB's Python client
runs with the same calls."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from esdb.client import (
    CaughtUp,
    Client,
    InvalidRequestError,
    KurrentRecordedEvent,
    NewEvent,
    StreamNotFoundError,
    StreamState,
    WrongCurrentVersionError,
)
from esdb.client.kurrent_names import KurrentCatchupSubscription, KurrentPersistentSubscription
from tests.stack import Stack, wait_until

DEADLINE_S = 20.0


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with Client.connect(stack.url) as connected:
        yield connected


async def take(
    sub: KurrentCatchupSubscription, count: int
) -> list[KurrentRecordedEvent | CaughtUp]:
    got: list[KurrentRecordedEvent | CaughtUp] = []
    async with asyncio.timeout(DEADLINE_S):
        while len(got) < count:
            got.append(await anext(sub))
    return got


async def test_append_to_stream_and_get_stream(client: Client) -> None:
    stream = _name("order-")
    event1 = NewEvent("OrderCreated", {}, event_id=str(uuid.uuid4()))
    commit1 = await client.append_to_stream(
        stream, current_version=StreamState.NO_STREAM, events=event1
    )
    event2 = NewEvent("OrderUpdated", {}, event_id=str(uuid.uuid4()))
    event3 = NewEvent("OrderDeleted", {}, event_id=str(uuid.uuid4()))
    commit2 = await client.append_to_stream(stream, current_version=0, events=[event2, event3])
    assert commit2 == commit1 + 2

    # Idempotent, as kurrentdbclient's README shows it: the same events again change nothing.
    again = await client.append_to_stream(stream, current_version=0, events=[event2, event3])
    assert again == commit2

    with pytest.raises(WrongCurrentVersionError) as stale:
        await client.append_to_stream(stream, current_version=0, events=NewEvent("Late", {}))
    assert stale.value.actual_version == 2

    events = await client.get_stream(stream)
    assert isinstance(events, tuple)
    assert [e.type for e in events] == ["OrderCreated", "OrderUpdated", "OrderDeleted"]
    assert [e.stream_position for e in events] == [0, 1, 2]
    assert events[2].commit_position == commit2
    assert events[0].id == uuid.UUID(event1.event_id or "")
    assert [e.stream_position for e in await client.get_stream(stream, stream_position=1)] == [
        1,
        2,
    ]
    backwards = await client.get_stream(stream, backwards=True, limit=2)
    assert [e.stream_position for e in backwards] == [2, 1]

    assert await client.get_current_version(stream) == 2
    assert await client.get_current_version(_name("none-")) is StreamState.NO_STREAM
    assert await client.get_commit_position() >= commit2
    with pytest.raises(StreamNotFoundError):
        await client.get_stream(_name("none-"))


async def test_subscribe_to_stream_after_a_position_then_live(client: Client) -> None:
    stream = _name("sub-")
    await client.append_to_stream(
        stream,
        current_version=StreamState.ANY,
        events=[NewEvent("Happened", {"n": n}) for n in range(3)],
    )
    async with await client.subscribe_to_stream(
        stream, stream_position=0, include_caught_up=True
    ) as sub:
        history = await take(sub, 3)
        assert [getattr(e, "stream_position", None) for e in history] == [1, 2, None]
        assert isinstance(history[2], CaughtUp)
        await client.append_to_stream(
            stream, current_version=2, events=NewEvent("Happened", {"n": 3})
        )
        (live,) = await take(sub, 1)
        assert isinstance(live, KurrentRecordedEvent)
        assert live.stream_position == 3


async def test_subscribe_to_all_with_a_filter_and_a_commit_position(client: Client) -> None:
    category = _name("cat")
    first = await client.append_to_stream(
        f"{category}-1", current_version=StreamState.ANY, events=NewEvent("Skipped", {})
    )
    await client.append_to_stream(
        f"{category}-1", current_version=StreamState.ANY, events=NewEvent("Kept", {})
    )
    await client.append_to_stream(
        f"other{category}-1", current_version=StreamState.ANY, events=NewEvent("Kept", {})
    )
    sub = await client.subscribe_to_all(
        commit_position=first, filter_include=[f"{category}-.*"], filter_by_stream_name=True
    )
    try:
        (kept,) = await take(sub, 1)
        assert isinstance(kept, KurrentRecordedEvent)
        assert (kept.stream_name, kept.type) == (f"{category}-1", "Kept")
    finally:
        await sub.stop()


async def test_persistent_subscription_to_a_stream_with_ack_and_nack(client: Client) -> None:
    stream = _name("ps-")
    group = _name("g")
    await client.append_to_stream(
        stream,
        current_version=StreamState.NO_STREAM,
        events=[NewEvent("Happened", {"n": n}) for n in range(4)],
    )
    await client.create_subscription_to_stream(group, stream, stream_position=1)
    sub: KurrentPersistentSubscription = await client.read_subscription_to_stream(group, stream)
    try:
        got: list[KurrentRecordedEvent] = []
        async with asyncio.timeout(DEADLINE_S):
            async for event in sub:
                got.append(event)
                if event.stream_position == 3:
                    await sub.nack(event, action="park")
                else:
                    await sub.ack(event.id)
                if len(got) == 3:
                    break
        assert [e.stream_position for e in got] == [1, 2, 3]
        assert [e.retry_count for e in got] == [0, 0, 0]

        async def settled() -> bool:
            info = await client.get_subscription_info(group)
            return info.parked == 1 and info.in_flight == 0

        await wait_until(settled, timeout=DEADLINE_S, what="acks and the park")
        assert await client.replay_parked_events(group) == 1
    finally:
        await sub.stop()
        await client.delete_subscription(group)


async def test_persistent_subscription_to_all_from_a_commit_position(client: Client) -> None:
    group = _name("g")
    head = await client.get_commit_position()
    info = await client.create_subscription_to_all(group, commit_position=head + 1)
    try:
        assert info.start_position == head + 1
        with pytest.raises(InvalidRequestError, match="regular expressions"):
            await client.create_subscription_to_all(_name("g"), filter_include=["order-.*"])
    finally:
        await client.delete_subscription(group)
