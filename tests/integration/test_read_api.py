"""Reads over the public API: directions, starting points, paging, filters, min_position."""

from __future__ import annotations

import asyncio
import time
import uuid

import msgspec

from tests.stack import Api


async def _seed(api: Api, stream: str, count: int, type_: str = "Tick") -> None:
    await api.ok(
        "append",
        {"stream": stream, "events": [{"type": type_, "data": {"n": n}} for n in range(count)]},
    )


async def test_forward_and_backward_from_start_end_and_a_version(api: Api) -> None:
    stream = f"clock-{uuid.uuid4().hex[:8]}"
    await _seed(api, stream, 10)

    async def versions(**query: object) -> list[int]:
        reply = await api.ok("read_stream", {"stream": stream, **query})
        return [e["version"] for e in reply["events"]]

    assert await versions(limit=3) == [0, 1, 2]
    assert await versions(**{"from": 7}) == [7, 8, 9]
    assert await versions(**{"from": "end"}) == []
    assert await versions(**{"from": "end", "direction": "backward", "limit": 3}) == [9, 8, 7]
    assert await versions(**{"from": 4, "direction": "backward"}) == [4, 3, 2, 1, 0]
    assert await versions(**{"from": 50, "direction": "backward", "limit": 2}) == [9, 8]
    reply = await api.ok("read_stream", {"stream": stream, "limit": 1})
    assert reply["last_version"] == 9


async def test_paging_never_skips_or_repeats(api: Api) -> None:
    stream = f"page-{uuid.uuid4().hex[:8]}"
    await _seed(api, stream, 23)
    for direction, start in (("forward", "start"), ("backward", "end")):
        seen: list[int] = []
        cursor: object = start
        while cursor is not None:
            reply = await api.ok(
                "read_stream",
                {"stream": stream, "from": cursor, "limit": 5, "direction": direction},
            )
            seen.extend(e["version"] for e in reply["events"])
            cursor = reply["next"]
        expected = list(range(23)) if direction == "forward" else list(range(22, -1, -1))
        assert seen == expected, direction


async def test_read_all_pages_backward_without_gaps(api: Api) -> None:
    await _seed(api, f"bulk-{uuid.uuid4().hex[:8]}", 12)
    forward = await api.ok("read_all", {"limit": 10_000})
    seen: list[int] = []
    cursor: object = "end"
    while cursor is not None:
        reply = await api.ok(
            "read_all", {"from_position": cursor, "direction": "backward", "limit": 7}
        )
        seen.extend(e["position"] for e in reply["events"])
        cursor = reply["next_position"]
    assert seen[::-1][: len(forward["events"])] == [e["position"] for e in forward["events"]]


async def test_read_all_filters_run_on_the_server(api: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    await _seed(api, f"cart{tag}-1", 2, type_=f"ItemAdded{tag}")
    await _seed(api, f"cart{tag}-2", 1, type_=f"ItemRemoved{tag}")
    await _seed(api, f"user{tag}-1", 3, type_=f"UserSeen{tag}")

    async def matched(flt: dict[str, object]) -> list[tuple[str, str]]:
        reply = await api.ok("read_all", {"limit": 10_000, "filter": flt})
        return [(e["stream_id"], e["event_type"]) for e in reply["events"]]

    assert len(await matched({"event_types": [f"ItemAdded{tag}"]})) == 2
    assert len(await matched({"event_type_prefix": "Item", "stream_prefix": f"cart{tag}"})) == 3
    assert {s for s, _ in await matched({"category": f"user{tag}"})} == {f"user{tag}-1"}
    assert len(await matched({"event_type_regex": f"^Item(Added|Removed){tag}$"})) == 3
    assert {s for s, _ in await matched({"stream_regex": f"^cart{tag}-2$"})} == {f"cart{tag}-2"}
    assert await matched({"category": f"cart{tag}", "event_types": [f"UserSeen{tag}"]}) == []


async def test_min_position_waits_until_applied(api: Api) -> None:
    stream = f"ryw-{uuid.uuid4().hex[:8]}"
    await _seed(api, stream, 1)
    last = (
        await api.ok("read_all", {"from_position": "end", "direction": "backward", "limit": 1})
    )["events"][0]["position"]
    waiting = asyncio.create_task(
        api.call(
            "read_all",
            {"from_position": last + 1, "limit": 1, "min_position": last + 1, "timeout_ms": 10_000},
        )
    )
    # A read that can be answered now is, while the other waits on the same reader.
    started = time.monotonic()
    assert (await api.ok("read_stream", {"stream": stream}))["events"]
    assert time.monotonic() - started < 5 and not waiting.done()
    await _seed(api, stream, 1)
    reply = await waiting
    assert "error" not in reply, reply
    assert reply["events"][0]["position"] == last + 1

    error = await api.error(
        "read_stream", {"stream": stream, "min_position": last + 10**9, "timeout_ms": 200}
    )
    assert error["code"] == "timeout"


async def test_list_streams_and_stream_info(api: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    names = [f"ls{tag}-{n}" for n in range(5)]
    for name in names:
        await _seed(api, name, 2)
    await api.ok("set_stream_metadata", {"stream": names[1], "metadata": {"max_count": 1}})
    await api.ok("tombstone_stream", {"stream": names[2]})
    seen: list[dict[str, object]] = []
    after: str | None = f"ls{tag}"
    while True:
        reply = await api.ok("list_streams", {"after": after, "limit": 2})
        seen.extend(s for s in reply["streams"] if s["stream"].startswith(f"ls{tag}-"))
        if reply["next"] is None or not reply["next"].startswith(f"ls{tag}"):
            break
        after = reply["next"]
    assert [s["stream"] for s in seen] == names
    assert seen[0] == {"stream": names[0], "version": 1, "state": "active", "metadata": {}}
    assert seen[1]["metadata"] == {"max_count": 1}
    assert seen[2]["state"] == "tombstoned"
    info = await api.ok("stream_info", {"stream": names[0]})
    assert info == {"stream": names[0], "version": 1, "metadata": {}, "state": "active"}
    missing = await api.error("stream_info", {"stream": f"none-{tag}"})
    assert missing["code"] == "stream_not_found"


async def test_msgpack_requests_get_msgpack_replies(api: Api) -> None:
    stream = f"mp-{uuid.uuid4().hex[:8]}"
    headers = {"Content-Type": "application/msgpack"}
    body = msgspec.msgpack.encode(
        {
            "stream": stream,
            "events": [
                {
                    "type": "Raw",
                    "data": b"\x00\x01binary",
                    "content_type": "application/octet-stream",
                },
                {"type": "Doc", "data": b'{"a": 1}'},
            ],
        }
    )
    appended = msgspec.msgpack.decode(
        await api.raw("esdb.api.default.append", body, headers=headers)
    )
    assert appended["last_version"] == 1
    reply = msgspec.msgpack.decode(
        await api.raw(
            "esdb.api.default.read_stream",
            msgspec.msgpack.encode({"stream": stream}),
            headers=headers,
        )
    )
    assert [e["data"] for e in reply["events"]] == [b"\x00\x01binary", b'{"a": 1}']
    as_json = await api.ok("read_stream", {"stream": stream})
    assert as_json["events"][1]["data"] == {"a": 1}
