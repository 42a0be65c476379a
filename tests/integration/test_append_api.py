"""Appends over the public JSON API: versions, positions, concurrency checks, atomicity,
idempotency."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from tests.stack import Api


def _stream(prefix: str = "order") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _events(count: int, type_: str = "Happened", ids: bool = False) -> list[dict[str, Any]]:
    return [
        {"type": type_, "data": {"n": n}, **({"event_id": str(uuid.uuid4())} if ids else {})}
        for n in range(count)
    ]


async def test_versions_start_at_zero_and_positions_are_dense(api: Api) -> None:
    stream = _stream()
    first = await api.ok(
        "append", {"stream": stream, "expected_version": "no_stream", "events": _events(3)}
    )
    second = await api.ok("append", {"stream": stream, "expected_version": 2, "events": _events(2)})
    assert (first["first_version"], first["last_version"]) == (0, 2)
    assert (second["first_version"], second["last_version"]) == (3, 4)
    assert first["last_position"] - first["first_position"] == 2
    assert second["first_position"] > first["last_position"]
    read = await api.ok("read_stream", {"stream": stream})
    assert [e["version"] for e in read["events"]] == [0, 1, 2, 3, 4]
    assert [e["data"] for e in read["events"]] == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 0}, {"n": 1}]
    positions = [e["position"] for e in read["events"]]
    assert positions[:3] == list(range(first["first_position"], first["last_position"] + 1))


async def test_global_positions_have_no_gaps(api: Api) -> None:
    for _ in range(3):
        await api.ok("append", {"stream": _stream(), "events": _events(2)})
    page = await api.ok("read_all", {"from_position": "start", "limit": 10_000})
    positions = [e["position"] for e in page["events"]]
    assert positions == list(range(1, len(positions) + 1))


async def test_expected_version_modes(api: Api) -> None:
    stream = _stream()
    error = await api.error(
        "append", {"stream": stream, "expected_version": "stream_exists", "events": _events(1)}
    )
    assert error["code"] == "wrong_expected_version"
    assert error["details"]["actual_version"] == -1
    await api.ok(
        "append", {"stream": stream, "expected_version": "no_stream", "events": _events(1)}
    )
    await api.ok(
        "append", {"stream": stream, "expected_version": "stream_exists", "events": _events(1)}
    )
    await api.ok("append", {"stream": stream, "expected_version": "any", "events": _events(1)})
    await api.ok("append", {"stream": stream, "expected_version": 2, "events": _events(1)})
    for wrong in ("no_stream", 1, 7, -1):
        error = await api.error(
            "append", {"stream": stream, "expected_version": wrong, "events": _events(1)}
        )
        assert error["code"] == "wrong_expected_version", wrong
        assert error["details"]["actual_version"] == 3
    info = await api.ok("stream_info", {"stream": stream})
    assert info["version"] == 3, "a rejected append must write nothing"


async def test_append_multi_is_all_or_nothing(api: Api) -> None:
    a, b = _stream("acct"), _stream("acct")
    await api.ok("append", {"stream": b, "events": _events(1)})
    error = await api.error(
        "append_multi",
        {
            "appends": [
                {"stream": a, "expected_version": "no_stream", "events": _events(2)},
                {"stream": b, "expected_version": "no_stream", "events": _events(1)},
            ]
        },
    )
    assert error["code"] == "wrong_expected_version"
    assert error["details"]["stream"] == b
    missing = await api.error("read_stream", {"stream": a})
    assert missing["code"] == "stream_not_found"

    done = await api.ok(
        "append_multi",
        {
            "appends": [
                {"stream": a, "expected_version": "no_stream", "events": _events(2)},
                {"stream": b, "expected_version": 0, "events": _events(1)},
            ]
        },
    )
    first, second = done["results"]
    assert (first["first_version"], first["last_version"]) == (0, 1)
    assert (second["first_version"], second["last_version"]) == (1, 1)
    assert second["first_position"] == first["last_position"] + 1, "one contiguous entry"


async def test_retried_append_returns_the_original_result(api: Api) -> None:
    stream = _stream()
    events = _events(3, ids=True)
    body = {"stream": stream, "expected_version": "no_stream", "events": events}
    original = await api.ok("append", body)
    await api.ok("append", {"stream": stream, "events": _events(1)})
    retried = await api.ok("append", body)
    assert retried == original
    read = await api.ok("read_stream", {"stream": stream})
    assert len(read["events"]) == 4, "a retry must not write duplicates"


async def test_partial_overlap_is_an_idempotency_conflict(api: Api) -> None:
    stream = _stream()
    events = _events(2, ids=True)
    await api.ok("append", {"stream": stream, "events": events})
    error = await api.error(
        "append", {"stream": stream, "events": [events[1], *_events(1, ids=True)]}
    )
    assert error["code"] == "idempotency_conflict"
    elsewhere = await api.error("append", {"stream": _stream(), "events": events})
    assert elsewhere["code"] == "idempotency_conflict"
    assert (await api.ok("stream_info", {"stream": stream}))["version"] == 1


async def test_binary_content_travels_as_base64_in_json(api: Api) -> None:
    stream = _stream()
    await api.ok(
        "append",
        {
            "stream": stream,
            "events": [
                {
                    "type": "Blob",
                    "data": "AAEC/w==",
                    "metadata": "bWV0YQ==",
                    "content_type": "application/octet-stream",
                }
            ],
        },
    )
    event = (await api.ok("read_stream", {"stream": stream}))["events"][0]
    assert event["data"] == "AAEC/w=="
    assert event["metadata"] == "bWV0YQ=="
    assert event["content_type"] == "application/octet-stream"


async def test_event_record_has_every_contract_field(api: Api) -> None:
    stream = _stream()
    event_id = str(uuid.uuid4())
    await api.ok(
        "append",
        {
            "stream": stream,
            "events": [
                {"event_id": event_id, "type": "Shaped", "data": {"k": "v"}, "metadata": {"m": 1}}
            ],
        },
    )
    event = (await api.ok("read_stream", {"stream": stream}))["events"][0]
    assert event["event_id"] == event_id
    assert event["stream_id"] == stream
    assert event["event_type"] == "Shaped"
    assert event["metadata"] == {"m": 1}
    assert event["content_type"] == "application/json"
    assert event["created"].endswith("Z") and "T" in event["created"]


async def test_a_msgpack_body_without_a_content_type_gets_msgpack(api: Api) -> None:
    stream = _stream()
    body = msgspec.msgpack.encode(
        {"stream": stream, "expected_version": "no_stream", "events": [{"type": "T", "data": {}}]}
    )
    reply = await api.nc.request("esdb.api.default.append", body, timeout=10)
    assert msgspec.msgpack.decode(reply.data)["last_version"] == 0
    read = msgspec.msgpack.encode({"stream": stream})
    reply = await api.nc.request("esdb.api.default.read_stream", read, timeout=10)
    assert [e["version"] for e in msgspec.msgpack.decode(reply.data)["events"]] == [0]
