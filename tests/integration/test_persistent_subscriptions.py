"""Persistent subscriptions (consumer groups) and watches against a real stack. The stack is
shared: every test uses its own category, so groups select only their own events."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator

import pytest

from esdb.client import Client, NewEvent
from esdb.client.consumer import PersistentEvent, PersistentSubscription
from esdb.contracts.errors import AlreadyExists, InvalidRequest, NotFound
from tests.stack import Api, Stack, wait_until

DEADLINE_S = 20.0


def _uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with Client.connect(stack.url) as connected:
        yield connected


async def append_n(client: Client, category: str, count: int, **data: object) -> list[int]:
    """`count` events in `<category>-1`, one per append; their positions."""
    positions = []
    for n in range(count):
        result = await client.append(f"{category}-1", [NewEvent("Happened", {"n": n, **data})])
        positions.append(result.last_position)
    return positions


async def take(sub: PersistentSubscription, count: int) -> list[PersistentEvent]:
    got: list[PersistentEvent] = []
    async with asyncio.timeout(DEADLINE_S):
        while len(got) < count:
            got.append(await anext(sub))
    return got


async def settled_through(client: Client, name: str, position: int) -> None:
    async def reached() -> bool:
        return (await client.subscription_info(name)).checkpoint >= position

    await wait_until(reached, timeout=DEADLINE_S, what=f"{name} checkpoint at {position}")


async def test_create_info_list_and_delete(client: Client) -> None:
    uid = _uid()
    name = f"g{uid}"
    head = (await client.read_all(from_position="end", direction="backward", limit=1)).events
    info = await client.create_subscription(name, category=f"c{uid}", start="end")

    assert info.subscription == name
    assert info.subject == f"esdb.subs.default.{name}"
    assert info.start_position == (head[0].position if head else 0) + 1
    assert (info.in_flight, info.parked, info.consumers) == (0, 0, [])
    assert name in [s.subscription for s in await client.list_subscriptions()]
    with pytest.raises(AlreadyExists):
        await client.create_subscription(name, category=f"c{uid}")

    await client.delete_subscription(name)
    with pytest.raises(NotFound):
        await client.subscription_info(name)
    with pytest.raises(NotFound):
        await client.delete_subscription(name)
    assert name not in [s.subscription for s in await client.list_subscriptions()]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"subscription": "bad name", "selector": {"all": True}}, "subscription"),
        ({"subscription": "ok", "selector": {}}, "selector"),
        ({"subscription": "ok", "selector": {"all": True}, "max_in_flight": 0}, "max_in_flight"),
        ({"subscription": "ok", "selector": {"all": True}, "start": -3}, "start"),
        ({"subscription": "ok", "selector": {"all": True}, "start": "later"}, "start"),
        (
            {"subscription": "ok", "selector": {"all": True, "payload": [{"path": "a"}]}},
            "selector.payload[0]",
        ),
        ({"selector": {"all": True}}, "subscription"),
        ({"subscription": "ok", "selector": {"stream": ""}}, "selector.stream"),
        ({"subscription": "ok", "selector": {"stream": "a\u0000"}}, "selector.stream"),
        ({"subscription": "ok", "selector": {"all": True}, "start": 1 << 63}, "start"),
        ({"subscription": "ok", "selector": {"all": True}, "timeout_ms": -5}, "timeout_ms"),
    ],
)
async def test_bad_create_requests_name_the_field(
    api: Api, body: dict[str, object], field: str
) -> None:
    error = await api.error("subscription_create", body)
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] == field
    assert "ok" not in [
        s["subscription"] for s in (await api.ok("subscription_list"))["subscriptions"]
    ]


async def test_unknown_subscription_and_bad_nack_action(api: Api) -> None:
    error = await api.error("ack", {"subscription": f"none{_uid()}", "positions": [1]})
    assert (error["code"], error["details"]["field"]) == ("not_found", "subscription")
    error = await api.error("nack", {"subscription": "x", "positions": [1], "action": "explode"})
    assert (error["code"], error["details"]["field"]) == ("invalid_request", "action")


async def test_two_consumers_share_a_group_and_every_event_is_acked_once(client: Client) -> None:
    uid = _uid()
    name, category = f"g{uid}", f"c{uid}"
    await client.create_subscription(name, category=category)
    positions = await append_n(client, category, 40)
    seen: dict[str, list[int]] = {"a": [], "b": []}

    async def run(consumer: str) -> None:
        async with client.consume(name, consumer=consumer) as sub:
            async for delivered in sub:
                seen[consumer].append(delivered.position)
                sub.ack(delivered)
                if sum(map(len, seen.values())) >= len(positions):
                    return

    tasks = [asyncio.create_task(run("a")), asyncio.create_task(run("b"))]
    await asyncio.wait(tasks, timeout=DEADLINE_S, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    assert sorted(seen["a"] + seen["b"]) == positions, (seen, positions)
    assert seen["a"] and seen["b"], seen
    await settled_through(client, name, positions[-1])
    info = await client.subscription_info(name)
    assert info.in_flight == 0 and info.lag == info.last_position - info.checkpoint


async def test_a_poison_event_is_parked_after_max_retries_and_can_be_replayed(
    client: Client,
) -> None:
    uid = _uid()
    name, category = f"g{uid}", f"c{uid}"
    await client.create_subscription(name, category=category, max_retries=2)
    positions = await append_n(client, category, 5)
    poison = positions[2]
    attempts: list[int] = []
    async with client.consume(name) as sub:
        async with asyncio.timeout(DEADLINE_S):
            acked: set[int] = set()
            while len(acked) < 4 or len(attempts) < 3:
                delivered = await anext(sub)
                if delivered.position == poison:
                    attempts.append(delivered.attempt)
                    sub.nack(delivered, action="retry", reason="cannot handle it")
                else:
                    acked.add(delivered.position)
                    sub.ack(delivered)
        assert attempts == [1, 2, 3]
        await settled_through(client, name, positions[-1])  # the parked one counts as settled
        info = await client.subscription_info(name)
        assert info.parked == 1
        page = await client.list_parked(name)
        assert [p.position for p in page.parked] == [poison] and page.next is None
        assert "cannot handle it" in page.parked[0].reason

        assert await client.replay_parked(name) == 1
        replayed = (await take(sub, 1))[0]
        assert (replayed.position, replayed.attempt) == (poison, 1)
        sub.ack(replayed)
        await sub.flush()

    async def unparked() -> bool:
        return (await client.subscription_info(name)).parked == 0

    await wait_until(unparked, timeout=DEADLINE_S, what="the replayed event to leave parked")


async def test_park_skip_and_message_timeout(client: Client) -> None:
    uid = _uid()
    name, category = f"g{uid}", f"c{uid}"
    await client.create_subscription(name, category=category, message_timeout_ms=300)
    first, second, third = await append_n(client, category, 3)
    async with client.consume(name) as sub:
        by_position = {d.position: d for d in await take(sub, 3)}
        sub.nack(by_position[first], action="park", reason="by hand")
        sub.nack(by_position[second], action="skip")
        # `third` is not answered: after the timeout it comes again, as attempt 2.
        again = (await take(sub, 1))[0]
        assert (again.position, again.attempt) == (third, 2)
        sub.ack(again)
        await sub.flush()
    await settled_through(client, name, third)
    assert [p.position for p in (await client.list_parked(name)).parked] == [first]


async def test_a_slow_consumer_does_not_stall_the_others(client: Client) -> None:
    uid = _uid()
    name, category = f"g{uid}", f"c{uid}"
    await client.create_subscription(
        name, category=category, message_timeout_ms=500, max_retries=100, max_in_flight=5
    )
    positions = await append_n(client, category, 60)
    fast_acked: set[int] = set()
    async with client.consume(name, consumer="slow", max_in_flight=2) as slow:
        held = await take(slow, 2)  # never answered; the group must go on without them
        async with client.consume(name, consumer="fast") as fast:
            async with asyncio.timeout(DEADLINE_S):
                while not set(positions) <= fast_acked:
                    delivered = await anext(fast)
                    fast_acked.add(delivered.position)
                    fast.ack(delivered)
            await fast.flush()
            await settled_through(client, name, positions[-1])
        assert {h.position for h in held} <= fast_acked


async def test_the_checkpoint_survives_a_restart_of_the_subscription_service(
    client: Client, stack: Stack
) -> None:
    uid = _uid()
    name, category = f"g{uid}", f"c{uid}"
    await client.create_subscription(name, category=category)
    before = await append_n(client, category, 10)
    async with client.consume(name) as sub:
        for delivered in await take(sub, 10):
            sub.ack(delivered)
        await sub.flush()
    await settled_through(client, name, before[-1])

    os.kill(stack.pid("subscription"), signal.SIGKILL)

    async def back() -> bool:
        try:
            return (await client.subscription_info(name)).checkpoint == before[-1]
        except Exception:
            return False

    await wait_until(back, timeout=60, what="the restarted subscription service")
    after = await append_n(client, category, 3)
    async with client.consume(name) as sub:
        delivered = await take(sub, 3)
        assert [d.position for d in delivered] == after  # nothing acked before comes again
        sub.ack(*delivered)


async def test_payload_filters_select_exactly_the_matching_events(client: Client) -> None:
    uid = _uid()
    name, category = f"g{uid}", f"c{uid}"
    payload = [{"path": "order.total", "range": {"gte": 100}}, {"path": "tier", "in": ["gold"]}]
    await client.create_subscription(name, category=category, payload=payload)
    watch = await client.watch(category=category, payload=payload)
    try:
        bodies = [
            {"order": {"total": 150}, "tier": "gold"},  # matches
            {"order": {"total": 50}, "tier": "gold"},
            {"order": {"total": 150}, "tier": "silver"},
            {"tier": "gold"},
            {"order": {"total": 100.0}, "tier": "gold"},  # matches
            {"order": {"total": "150"}, "tier": "gold"},
        ]
        positions = []
        for body in bodies:
            result = await client.append(f"{category}-1", [NewEvent("Ordered", body)])
            positions.append(result.last_position)
        expected = [positions[0], positions[4]]

        async with client.consume(name) as sub:
            delivered = await take(sub, 2)
            sub.ack(*delivered)
        assert [d.position for d in delivered] == expected
        assert [d.event.json() for d in delivered] == [bodies[0], bodies[4]]
        await settled_through(client, name, positions[-1])

        watched = []
        async with asyncio.timeout(DEADLINE_S):
            while len(watched) < 2:
                watched.append(await anext(watch))
        assert [e.position for e in watched] == expected
    finally:
        await watch.close()


async def test_any_nats_client_consumes_with_json(api: Api, client: Client) -> None:
    uid = _uid()
    name, category = f"g{uid}", f"c{uid}"
    await api.ok(
        "subscription_create",
        {"subscription": name, "selector": {"category": category}, "start": "end"},
    )
    queue: asyncio.Queue[tuple[dict[str, object], dict[str, str]]] = asyncio.Queue()

    async def on_message(msg: object) -> None:
        queue.put_nowait((json.loads(msg.data), msg.headers or {}))  # type: ignore[attr-defined]

    sub = await api.nc.subscribe(f"esdb.subs.default.{name}", queue=name, cb=on_message)
    try:
        positions = await append_n(client, category, 2, source="json")
        got = [await asyncio.wait_for(queue.get(), DEADLINE_S) for _ in positions]
        assert [int(h["Esdb-Position"]) for _, h in got] == positions
        assert [e["position"] for e, _ in got] == positions
        assert got[0][0]["data"] == {"n": 0, "source": "json"}
        reply = await api.ok("ack", {"subscription": name, "positions": positions})
        assert reply == {"settled": 2}
    finally:
        await sub.unsubscribe()
    await settled_through(client, name, positions[-1])


async def test_a_deleted_group_can_be_created_again_from_scratch(client: Client) -> None:
    uid = _uid()
    name, category = f"g{uid}", f"c{uid}"
    await client.create_subscription(name, category=category)
    positions = await append_n(client, category, 2)
    async with client.consume(name) as sub:
        first = await take(sub, 1)
        sub.nack(*first, action="park")
        await sub.flush()

    async def parked() -> bool:
        return (await client.subscription_info(name)).parked == 1

    await wait_until(parked, timeout=DEADLINE_S, what="one parked event")
    await client.delete_subscription(name)
    info = await client.create_subscription(name, category=category)
    assert (info.checkpoint, info.parked) == (0, 0)
    async with client.consume(name) as sub:
        assert sorted(d.position for d in await take(sub, 2)) == positions


async def test_invalid_selector_in_the_client_raises(client: Client) -> None:
    with pytest.raises(InvalidRequest):
        await client.create_subscription(f"g{_uid()}", stream="a", category="b")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"selector": {"all": True}, "after": 1 << 63}, "after"),
        ({"selector": {"all": True}, "after": -1}, "after"),
        ({"selector": {"stream": ""}}, "selector.stream"),
        ({"selector": {"all": True}, "ttl_ms": 10}, "ttl_ms"),
    ],
)
async def test_bad_watch_requests_name_the_field(
    api: Api, body: dict[str, object], field: str
) -> None:
    error = await api.error("watch", body)
    assert (error["code"], error["details"]["field"]) == ("invalid_request", field)
