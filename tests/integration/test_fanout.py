"""The leader-emitter publishes every committed event once, in order, on its subject."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
from nats.aio.msg import Msg

from esdb.contracts.topics import (
    POSITION_HEADER,
    category_subject,
    event_subject,
    event_type_subject,
    stream_subject,
)
from tests.stack import Api, wait_until


async def test_every_event_is_published_in_order_with_headers(api: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    received: list[Msg] = []

    async def collect(msg: Msg) -> None:
        received.append(msg)

    sub = await api.nc.subscribe(category_subject("default", f"fan{tag}"), cb=collect)
    await api.nc.flush()
    streams = [f"fan{tag}-{n}" for n in range(3)]
    appended = []
    for round_ in range(4):
        for stream in streams:
            appended.append(
                await api.ok(
                    "append",
                    {"stream": stream, "events": [{"type": "Tick", "data": {"r": round_}}] * 2},
                )
            )

    async def all_arrived() -> bool:
        return len(received) >= 24

    await wait_until(all_arrived, timeout=10, what="24 fan-out messages")
    await sub.unsubscribe()
    positions = [int((m.headers or {})[POSITION_HEADER]) for m in received]
    expected = [p for a in appended for p in range(a["first_position"], a["last_position"] + 1)]
    assert positions == expected, "each event exactly once, in position order"
    first = msgspec.json.decode(received[0].data)
    assert first["stream_id"] == streams[0]
    assert first["data"] == {"r": 0}
    assert received[0].subject == event_subject("default", streams[0], "Tick")


async def test_wildcards_select_stream_category_and_type(api: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    odd_stream = f"w{tag}.cat-a b*>ü"
    odd_type = f"Type.{tag} >"
    selectors = {
        "stream": stream_subject("default", odd_stream),
        "category": category_subject("default", f"w{tag}.cat"),
        "type": event_type_subject("default", odd_type),
    }
    seen: dict[str, list[str]] = {name: [] for name in selectors}
    subs = []
    for name, subject in selectors.items():

        async def collect(msg: Msg, name: str = name) -> None:
            seen[name].append(msgspec.json.decode(msg.data)["event_type"])

        subs.append(await api.nc.subscribe(subject, cb=collect))
    await api.nc.flush()
    await api.ok(
        "append", {"stream": odd_stream, "events": [{"type": odd_type}, {"type": "Other"}]}
    )
    await api.ok("append", {"stream": f"w{tag}.cat-other", "events": [{"type": odd_type}]})

    async def arrived() -> bool:
        return len(seen["category"]) >= 3 and len(seen["type"]) >= 2 and len(seen["stream"]) >= 2

    await wait_until(arrived, timeout=10, what="messages on every selector")
    await asyncio.sleep(0)
    assert seen["stream"] == [odd_type, "Other"]
    assert seen["type"] == [odd_type, odd_type]
    assert sorted(seen["category"]) == sorted([odd_type, "Other", odd_type])
    for sub in subs:
        await sub.unsubscribe()
