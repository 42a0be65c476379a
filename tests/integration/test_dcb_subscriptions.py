"""A DCB query as a subscription's selector, against a real stack: live and catch-up
subscriptions (the client checks the query), watches and persistent subscriptions (the
subscription service checks it)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from esdb.client import CaughtUp, Client, DcbEvent, DcbQuery, DcbQueryItem, NewEvent
from tests.stack import Stack

DEADLINE_S = 20.0
COURSE_1 = DcbQuery([DcbQueryItem(tags=["course-1"]), DcbQueryItem(types=["Closed"])])


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    """A client on a store of its own."""
    store = f"dcbsub{uuid.uuid4().hex[:12]}"
    async with Client.connect(stack.url, store=store) as connected:
        await connected.create_store(store)
        yield connected
        await connected.remove_store(store)


async def _append_mix(client: Client) -> list[int]:
    """DCB events and a stream event; the positions COURSE_1 selects."""
    selected = []
    await client.append("order-1", [NewEvent("Placed", {})])
    selected.append(await client.dcb_append([DcbEvent("Joined", {}, tags=["course-1", "s1"])]))
    await client.dcb_append([DcbEvent("Joined", {}, tags=["course-2", "s1"])])
    selected.append(await client.dcb_append([DcbEvent("Closed", {}, tags=["course-3"])]))
    await client.dcb_append([DcbEvent("Opened", {}, tags=["course-3"])])
    return selected


async def test_live_and_catch_up_subscriptions_select_by_query(client: Client) -> None:
    before = await _append_mix(client)
    async with (
        client.subscribe(query=COURSE_1) as live,
        client.subscribe(query=COURSE_1, from_position="start") as catch_up,
    ):
        after = await _append_mix(client)
        async with asyncio.timeout(DEADLINE_S):
            got_live = [(await anext(live)) for _ in after]
            history = []
            while len(history) < len(before) + len(after) + 1:
                history.append(await anext(catch_up))
    assert [e.position for e in got_live] == after
    assert [e.tags for e in got_live] == [["course-1", "s1"], ["course-3"]]
    # History is read when the subscription is first iterated: it may hold `after` too.
    caught_up = [i for i, e in enumerate(history) if isinstance(e, CaughtUp)]
    assert len(caught_up) == 1 and caught_up[0] >= len(before)
    replayed = [e for e in history if not isinstance(e, CaughtUp)]
    assert [e.position for e in replayed] == before + after
    assert {e.stream_id for e in replayed} == {"$dcb"}
    assert [e.tags for e in replayed[:2]] == [["course-1", "s1"], ["course-3"]]


async def test_watches_and_persistent_subscriptions_select_by_query(client: Client) -> None:
    name = f"g{uuid.uuid4().hex[:8]}"
    await client.create_subscription(name, query=COURSE_1)
    watch = await client.watch(query=COURSE_1)
    try:
        selected = await _append_mix(client)
        async with asyncio.timeout(DEADLINE_S):
            watched = [await anext(watch) for _ in selected]
        assert [e.position for e in watched] == selected
        assert watched[0].tags == ["course-1", "s1"]
        async with client.consume(name) as sub, asyncio.timeout(DEADLINE_S):
            delivered = [await anext(sub) for _ in selected]
            sub.ack(*delivered)
        assert [d.position for d in delivered] == selected
        assert [d.event.tags for d in delivered] == [["course-1", "s1"], ["course-3"]]
    finally:
        await watch.close()


async def test_a_bad_query_selector_names_its_field(client: Client) -> None:
    from esdb.client import InvalidRequest

    with pytest.raises(InvalidRequest) as refused:
        await client.create_subscription("bad", query=DcbQuery([DcbQueryItem(tags=[""])]))
    assert refused.value.details["field"] == "selector.query.items[0].tags[0]"
