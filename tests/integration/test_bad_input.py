"""Bad input gets a typed error naming the field, writes nothing, and the stack keeps serving."""

from __future__ import annotations

import asyncio
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
            {"stream": "s-1", "events": [{"type": "T", "content_type": ""}]},
            "invalid_request",
            "events[0].content_type",
        ),
        (
            {"stream": "s-1", "events": [{"type": "T", "content_type": "x" * 129}]},
            "invalid_request",
            "events[0].content_type",
        ),
        (
            {"stream": "s-1", "events": [{"type": "T", "content_type": "text/\u0000"}]},
            "invalid_request",
            "events[0].content_type",
        ),
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


# ---- found by tests/system/test_fuzz.py ----------------------------------------------------

MSGPACK = {"Content-Type": "application/msgpack"}


async def _msgpack_error(api: Api, operation: str, body: Any) -> dict[str, Any]:
    reply = msgspec.msgpack.decode(
        await api.raw(
            f"esdb.api.default.{operation}", msgspec.msgpack.encode(body), headers=MSGPACK
        )
    )
    assert "error" in reply, reply
    error: dict[str, Any] = reply["error"]
    return error


@pytest.mark.parametrize(
    ("operation", "body", "field"),
    [
        ("read_stream", {"stream": "s-1", "from": 2**64}, "from"),
        ("read_stream", {"stream": "s-1", "min_position": 10**30}, "min_position"),
        ("read_all", {"from_position": -(2**63) - 1}, "from_position"),
        ("append", {"stream": "s-1", "events": [EVENT], "timeout_ms": 2**64}, "timeout_ms"),
        (
            "append_multi",
            {"appends": [{"stream": "s-1", "expected_version": 2**64, "events": [EVENT]}]},
            "appends[0].expected_version",
        ),
        ("set_stream_metadata", {"stream": "s-1", "metadata": {"a": [2**64]}}, "metadata.a[0]"),
        (
            "subscription_create",
            {"subscription": "x", "selector": {"all": True}, "start": 2**64},
            "start",
        ),
        (
            "snapshot_record",
            {"source_uuid": "a", "stream_uuid": "b", "version": 1, "data": 1, "keep_last": 2**64},
            "keep_last",
        ),
    ],
)
async def test_json_integers_beyond_64_bits_name_the_field(
    api: Api, operation: str, body: dict[str, Any], field: str
) -> None:
    # Each of these was an `internal` error (msgpack cannot carry the integer inside the
    # cluster); the append with expected_version 2**64 got no reply at all.
    error = await api.error(operation, body)
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] == field


async def test_an_unencodable_append_does_not_sink_the_batch_it_rides_in(api: Api) -> None:
    stream = f"batch-{uuid.uuid4().hex[:8]}"
    bad = {"stream": stream, "expected_version": 2**64, "events": [EVENT]}
    good = [api.call("append", {"stream": stream, "events": [EVENT]}) for _ in range(20)]
    replies = await asyncio.gather(api.call("append", bad), *good)
    assert replies[0]["error"]["details"]["field"] == "expected_version"
    assert all("first_version" in reply for reply in replies[1:]), replies


@pytest.mark.parametrize(
    ("operation", "raw"),
    [
        ("stream_info", b'{"stream": "a\xff\xfeb"}'),  # not UTF-8
        ("subscription_info", b'{"subscription": "\xc3"}'),
        ("set_stream_metadata", b'{"stream": "s", "metadata": {"a": "\xed\xa0\x80"}}'),
        (
            "set_stream_metadata",
            b'{"stream": "s", "metadata": ' + b'{"a": ' * 3000 + b"1}" + b"}" * 3000,
        ),
        ("read_all", b"[" * 5000 + b"]" * 5000),
    ],
)
async def test_undecodable_json_is_a_body_error(api: Api, operation: str, raw: bytes) -> None:
    reply = msgspec.json.decode(await api.raw(f"esdb.api.default.{operation}", raw))
    assert reply["error"]["code"] == "invalid_request", reply
    assert reply["error"]["details"]["field"] == "body"


@pytest.mark.parametrize(
    ("operation", "raw"),
    [
        ("stream_info", b"\x81\xa6stream\xa2\xff\xfe"),  # a str that is not UTF-8
        ("subscription_info", b"\x81\xacsubscription\xa3\xed\xa0\x80"),  # a lone surrogate
        ("set_stream_metadata", b"\x82\xa6stream\xa1s\xa8metadata" + b"\x81\xa1a" * 3000 + b"\x01"),
    ],
)
async def test_undecodable_msgpack_is_a_body_error(api: Api, operation: str, raw: bytes) -> None:
    reply = await api.raw(f"esdb.api.default.{operation}", raw, headers=MSGPACK)
    error = msgspec.msgpack.decode(reply)["error"]
    assert error["code"] == "invalid_request", error
    assert error["details"]["field"] == "body"


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        (
            "set_stream_metadata",
            {"stream": "poison-1", "metadata": {"x": msgspec.msgpack.Ext(1, b"a")}},
        ),
        ("set_stream_metadata", {"stream": "poison-1", "metadata": {"x": {(1, 2): 3}}}),
        ("set_stream_metadata", {"stream": "poison-1", "metadata": {"x": {None: 3}}}),
        (
            "subscription_create",
            {
                "subscription": "poison",
                "selector": {
                    "all": True,
                    "payload": [{"path": "a", "equals": msgspec.msgpack.Ext(1, b"")}],
                },
            },
        ),
        ("watch", {"selector": {"all": True, "payload": [{"path": "a", "in": [{(1,): 1}]}]}}),
    ],
)
async def test_msgpack_values_json_cannot_hold_are_refused(
    api: Api, operation: str, body: dict[str, Any]
) -> None:
    # Stored, they made every later JSON `stream_info` or `subscription_list` fail (internal).
    error = await _msgpack_error(api, operation, body)
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] in ("body", "metadata.x", "selector.payload[0].in[0]")
    await api.ok("subscription_list")
    assert (await api.call("stream_info", {"stream": "poison-1"}))["error"]["code"] == (
        "stream_not_found"
    )


@pytest.mark.parametrize("timeout_ms", [0, -5, 60_001, 2**63])
@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("append", {"stream": "timeouts-1", "events": [EVENT]}),
        ("append_multi", {"appends": [{"stream": "timeouts-1", "events": [EVENT]}]}),
        ("read_stream", {"stream": "s-1", "min_position": 2**62}),
        ("read_all", {}),
        ("list_streams", {}),
        ("stream_info", {"stream": "s-1"}),
    ],
)
async def test_timeout_ms_is_bounded(
    api: Api, operation: str, body: dict[str, Any], timeout_ms: int
) -> None:
    # A negative timeout answered `timeout` while the append landed; a huge one with a far
    # `min_position` held a reader for ever.
    error = await api.error(operation, {**body, "timeout_ms": timeout_ms})
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] == "timeout_ms"
    assert (await api.call("stream_info", {"stream": "timeouts-1"}))["error"]["code"] == (
        "stream_not_found"
    )


async def test_a_list_cursor_longer_than_any_stream_id_is_too_large(api: Api) -> None:
    error = await api.error("list_streams", {"after": "x" * 501})
    assert error["code"] == "too_large"
    assert error["details"] == {"field": "after", "limit": 500}
    long_stream = await api.error("append", {"stream": "x" * 501, "events": [EVENT]})
    assert long_stream["details"] == {"field": "stream", "limit": 500}


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("stream_regex", "^(a+)+$"),  # exponential for a backtracking matcher
        ("stream_regex", "^(a|aa)*$"),
        ("stream_regex", "a.*a.*a.*a.*b"),  # polynomial: n^4 over a 500-byte id
        ("event_type_regex", "^(\\w+\\s?)*$"),
    ],
)
async def test_a_regex_that_would_backtrack_is_matched_in_linear_time(
    api: Api, name: str, pattern: str
) -> None:
    # With Python's `re`, `^(a+)+$` against the first id stalled the reader's event loop for
    # minutes, and `a.*a.*a.*a.*b` against the second for about 11: every read of the node timed
    # out behind them. RE2 answers at once, well inside the read's own timeout.
    hostile = ["redos-" + "a" * 28 + "!", "a" * 480 + "!"]
    event = {**EVENT, "type": "a" * 480 + "!"}
    first = [await api.ok("append", {"stream": s, "events": [event]}) for s in hostile]
    read = {"filter": {name: pattern}, "from_position": first[0]["first_position"]}
    found = await api.ok("read_all", read)
    assert not {e["stream_id"] for e in found["events"]} & set(hostile)
    control = await api.ok("read_all", {**read, "filter": {name: "!$"}})  # the scan meets them
    assert [e["stream_id"] for e in control["events"]] == hostile
    latest = {"from_position": "end", "direction": "backward", "limit": 1}
    assert (await api.ok("read_all", latest))["events"][0]["stream_id"] == hostile[-1]


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"^(\w+)\1$", "invalid escape sequence"),  # back-references: RE2 has none
        ("^(?=order)", "invalid perl operator"),  # nor look-arounds
        (r"order\Z", "invalid escape sequence"),  # Python's \Z is RE2's \z
    ],
)
async def test_a_regex_outside_re2_syntax_is_refused_naming_the_field(
    api: Api, pattern: str, reason: str
) -> None:
    error = await api.error("read_all", {"filter": {"stream_regex": pattern}})
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] == "filter.stream_regex"
    assert reason in error["message"]
