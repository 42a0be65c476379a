"""Bad input gets a typed error naming the field, writes nothing, and the stack keeps serving."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from tests.stack import Api

EVENT = {"type": "T", "data": {}}


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"events": [EVENT]}, "invalid_request", "stream"),
        ({"stream": 42, "events": [EVENT]}, "invalid_request", "stream"),
        ({"stream": "s-1"}, "invalid_request", "events"),
        ({"stream": "s-1", "events": []}, "invalid_request", "events"),
        ({"stream": "s-1", "events": [{"data": {}}]}, "invalid_request", "events[0].type"),
        ({"stream": "s-1", "events": [{"type": ""}]}, "invalid_request", "events[0].type"),
        (
            {"stream": "s-1", "events": [{"type": "T", "event_id": "nope"}]},
            "invalid_request",
            "events[0].event_id",
        ),
        (
            {"stream": "s-1", "events": [EVENT], "expected_version": "maybe"},
            "invalid_request",
            "expected_version",
        ),
        (
            {"stream": "s-1", "events": [EVENT], "expected_version": -5},
            "invalid_request",
            "expected_version",
        ),
        ({"stream": "", "events": [EVENT]}, "invalid_request", "stream"),
        ({"stream": "bad\u0000name", "events": [EVENT]}, "invalid_request", "stream"),
        ({"stream": "$system", "events": [EVENT]}, "invalid_request", "stream"),
        ({"stream": "x" * 2000, "events": [EVENT]}, "too_large", "stream"),
        (
            {"stream": "s-1", "events": [{"type": "T", "data": "x" * (1 << 20)}]},
            "too_large",
            "events[0].data",
        ),
        (
            {
                "stream": "s-1",
                "events": [
                    {"type": "T", "data": "not base64!", "content_type": "application/octet-stream"}
                ],
            },
            "invalid_request",
            "events[0].data",
        ),
    ],
)
async def test_bad_append_names_the_field(
    api: Api, body: dict[str, Any], code: str, field: str
) -> None:
    before = await api.ok("read_all", {"from_position": "end", "direction": "backward", "limit": 1})
    error = await api.error("append", body)
    assert error["code"] == code
    assert error["details"]["field"] == field
    assert error["message"]
    after = await api.ok("read_all", {"from_position": "end", "direction": "backward", "limit": 1})
    assert after["events"][:1] == before["events"][:1], "nothing may land"


@pytest.mark.parametrize(
    ("operation", "body", "field"),
    [
        ("read_stream", {"stream": "s-1", "limit": 0}, "limit"),
        ("read_stream", {"stream": "s-1", "limit": "ten"}, "limit"),
        ("read_stream", {"stream": "s-1", "direction": "sideways"}, "direction"),
        ("read_stream", {"stream": "s-1", "from": "middle"}, "from"),
        ("read_all", {"from_position": -3}, "from_position"),
        ("read_all", {"filter": {"stream_regex": "("}}, "filter.stream_regex"),
        ("read_all", {"filter": {"event_types": "T"}}, "filter.event_types"),
        ("read_all", {"limit": 10**7}, "limit"),
        ("append_multi", {"appends": []}, "appends"),
        (
            "append_multi",
            {"appends": [{"stream": "s-1", "events": [{"type": 3}]}]},
            "appends[0].events[0].type",
        ),
    ],
)
async def test_bad_reads_and_transactions_name_the_field(
    api: Api, operation: str, body: dict[str, Any], field: str
) -> None:
    error = await api.error(operation, body)
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] == field


async def test_malformed_bodies_and_unknown_targets(api: Api) -> None:
    for raw, headers in (
        (b"{not json", None),
        (b"\xc1\xff", {"Content-Type": "application/msgpack"}),
        (b"[1, 2]", None),
    ):
        reply = await api.raw("esdb.api.default.append", raw, headers=headers)
        decoded = msgspec.msgpack.decode(reply) if headers else msgspec.json.decode(reply)
        assert decoded["error"]["code"] == "invalid_request"
        assert decoded["error"]["details"]["field"] == "body"
    unknown_store = await api.error("append", {"stream": "s-1", "events": [EVENT]}, store="nostore")
    assert unknown_store["code"] == "not_found"
    assert unknown_store["details"]["field"] == "store"
    unknown_op = await api.error("explode", {})
    assert unknown_op["code"] == "invalid_request"
    assert unknown_op["details"]["field"] == "operation"
    bad_store = await api.error("read_all", {}, store="-bad")
    assert bad_store["details"]["field"] == "store"


async def test_stack_keeps_serving_after_bad_input(api: Api) -> None:
    for junk in (b"", b"\x00" * 64, b"{}", b"null", b'{"stream": {"a": 1}}'):
        await api.raw("esdb.api.default.append", junk)
        await api.raw("esdb.api.default.read_all", junk)
    stream = f"alive-{uuid.uuid4().hex[:8]}"
    done = await api.ok("append", {"stream": stream, "events": [EVENT]})
    assert done["first_version"] == 0
    health = await api.ok("health", store="_sys")
    assert health["status"] == "ok"


async def test_duplicate_event_ids_in_one_request_are_rejected(api: Api) -> None:
    event_id = str(uuid.uuid4())
    error = await api.error(
        "append",
        {
            "stream": "dup-1",
            "events": [{"type": "T", "event_id": event_id}, {"type": "T", "event_id": event_id}],
        },
    )
    assert error["code"] == "invalid_request"


async def test_oversize_request_is_too_large(api: Api) -> None:
    events = [{"type": "T", "data": "x" * 1000} for _ in range(5000)]
    error = await api.error("append", {"stream": "big-1", "events": events})
    assert error["code"] == "too_large"
    assert error["details"]["field"] == "body"
