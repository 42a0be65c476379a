"""Projections end to end on a real stack: the KurrentDB docs' example projections over JSON
requests, faults and limits beside a healthy projection, the lifecycle, and the Python client."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

from esdb.client import Client, NewEvent, RecordedEvent
from tests.stack import Api, Stack, wait_until

TIMEOUT_S = 60.0


def _uid(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def _append(api: Api, stream: str, *events: tuple[str, Any]) -> None:
    body = {
        "stream": stream,
        "expected_version": "any",
        "events": [{"type": kind, "data": data} for kind, data in events],
    }
    await api.ok("append", body)


async def _info(api: Api, name: str) -> dict[str, Any]:
    info: dict[str, Any] = await api.ok("projection_info", {"name": name})
    return info


async def _caught_up(api: Api, name: str) -> dict[str, Any]:
    """The projection's info once it has processed the whole log (fails if it faults)."""
    found: dict[str, Any] = {}

    async def done() -> bool:
        found.update(await _info(api, name))
        assert found["status"] != "faulted", found
        return bool(found["lag"] == 0)

    await wait_until(done, timeout=TIMEOUT_S, what=f"projection {name} to catch up")
    return found


async def _faulted(api: Api, name: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def faulted() -> bool:
        found.update(await _info(api, name))
        return bool(found["status"] == "faulted")

    await wait_until(faulted, timeout=TIMEOUT_S, what=f"projection {name} to fault")
    return found


async def _state(api: Api, name: str, partition: str | None = None) -> Any:
    body: dict[str, Any] = {"name": name}
    if partition is not None:
        body["partition"] = partition
    return (await api.ok("projection_state", body))["state"]


async def test_counting_events_by_type_over_from_category(api: Api) -> None:
    category = _uid("shop")
    for n in range(3):
        await _append(api, f"{category}-{n}", ("ItemAdded", {"n": n}), ("ItemRemoved", {"n": n}))
    await _append(api, f"{category}-0", ("ItemAdded", {"n": 9}))
    await _append(api, _uid("other-"), ("ItemAdded", {"n": 1}))
    name = _uid("count-")
    query = f"""
fromCategory('{category}')
  .when({{
    $init: function () {{ return {{ added: 0, removed: 0 }}; }},
    ItemAdded: function (s, e) {{ s.added += 1; }},
    ItemRemoved: function (s, e) {{ s.removed += 1; }}
  }})
  .transformBy(function (s) {{ return s.added - s.removed; }})
"""
    created = await api.ok("projection_create", {"name": name, "query": query})
    assert (created["name"], created["status"], created["emit_enabled"]) == (name, "running", False)
    info = await _caught_up(api, name)
    assert await _state(api, name) == {"added": 4, "removed": 3}
    assert (await api.ok("projection_result", {"name": name}))["result"] == 1
    assert info["events_processed"] == 7
    listed = await api.ok("projection_list")
    assert name in [p["name"] for p in listed["projections"]]
    # Live: a new event moves the state, from the checkpoint on (nothing counted twice).
    await _append(api, f"{category}-7", ("ItemRemoved", {}))
    await wait_until(
        lambda: _removed_is(api, name, 4), timeout=TIMEOUT_S, what="the live event to count"
    )
    assert (await _caught_up(api, name))["events_processed"] == 8


async def _removed_is(api: Api, name: str, removed: int) -> bool:
    state = await _state(api, name)
    return bool(state["removed"] == removed)


async def test_from_all_and_from_stream_from_start_and_end(api: Api) -> None:
    stream = _uid("acct-")
    await _append(api, stream, ("Deposited", {"amount": 5}), ("Deposited", {"amount": 7}))
    from_start, from_end, everything = _uid("s-"), _uid("e-"), _uid("all-")
    query = f"""fromStream('{stream}').when({{
      $init: () => ({{ total: 0 }}),
      Deposited: (s, e) => {{ s.total += e.data.amount; return s; }}
    }})"""
    await api.ok("projection_create", {"name": from_start, "query": query})
    await api.ok("projection_create", {"name": from_end, "query": query, "start": "end"})
    await api.ok(
        "projection_create",
        {"name": everything, "query": "fromAll().when({$init: () => 0, $any: (s, e) => s + 1})"},
    )
    await _append(api, stream, ("Deposited", {"amount": 100}))
    await _caught_up(api, from_start)
    await _caught_up(api, from_end)
    assert await _state(api, from_start) == {"total": 112}
    assert await _state(api, from_end) == {"total": 100}
    counted = await _caught_up(api, everything)
    assert await _state(api, everything) == counted["events_processed"] > 3


async def test_foreach_stream_and_partition_by(api: Api) -> None:
    category = _uid("cart")
    await _append(api, f"{category}-a", ("Added", {"sku": "x", "qty": 2}))
    await _append(api, f"{category}-b", ("Added", {"sku": "y", "qty": 1}))
    await _append(api, f"{category}-a", ("Added", {"sku": "y", "qty": 3}))
    per_stream, per_sku = _uid("per-stream-"), _uid("per-sku-")
    await api.ok(
        "projection_create",
        {
            "name": per_stream,
            "query": f"""fromCategory('{category}').foreachStream().when({{
              $init: () => ({{ items: 0 }}),
              Added: (s, e) => {{ s.items += e.body.qty; }}
            }})""",
        },
    )
    await api.ok(
        "projection_create",
        {
            "name": per_sku,
            "query": f"""fromCategory('{category}').partitionBy(e => e.data.sku).when({{
              $init: () => ({{ qty: 0 }}),
              Added: (s, e) => {{ s.qty += e.data.qty; }}
            }})""",
        },
    )
    info = await _caught_up(api, per_stream)
    assert info["partitions"] == 2
    assert await _state(api, per_stream, f"{category}-a") == {"items": 5}
    assert await _state(api, per_stream, f"{category}-b") == {"items": 1}
    await _caught_up(api, per_sku)
    assert await _state(api, per_sku, "x") == {"qty": 2}
    assert await _state(api, per_sku, "y") == {"qty": 4}
    missing = await api.error("projection_state", {"name": per_sku, "partition": "z"})
    assert (missing["code"], missing["details"]["field"]) == ("not_found", "partition")


async def test_emit_into_a_derived_stream_read_back(api: Api) -> None:
    source = _uid("orders-")
    target = _uid("big-orders-")
    await _append(api, source, ("Placed", {"total": 5}), ("Placed", {"total": 500}))
    name = _uid("emitter-")
    query = f"""fromStream('{source}').when({{
      Placed: (s, e) => {{
        if (e.data.total > 100) emit('{target}', 'BigOrder', {{ total: e.data.total }});
      }}
    }})"""
    refused = await api.ok("projection_create", {"name": name + "-off", "query": query})
    assert refused["emit_enabled"] is False
    off = await _faulted(api, name + "-off")
    assert "emit_enabled" in off["reason"]
    await api.ok("projection_create", {"name": name, "query": query, "emit_enabled": True})
    await _append(api, source, ("Placed", {"total": 900}))
    info = await _caught_up(api, name)
    assert info["events_emitted"] == 2
    read = await api.ok("read_stream", {"stream": target})
    assert [(e["event_type"], e["data"]) for e in read["events"]] == [
        ("BigOrder", {"total": 500}),
        ("BigOrder", {"total": 900}),
    ]
    # A target that can no longer be written faults the projection, with nothing half-done.
    await api.ok("tombstone_stream", {"stream": target})
    await _append(api, source, ("Placed", {"total": 700}))
    blocked = await _faulted(api, name)
    assert "tombstoned" in blocked["reason"]
    assert blocked["events_emitted"] == 2 and await _state(api, name) == {}


async def test_link_to_by_category(api: Api) -> None:
    category = _uid("user")
    await _append(api, f"{category}-1", ("Registered", {}))
    await _append(api, f"{category}-2", ("Registered", {}), ("Renamed", {}))
    name, links = _uid("links-"), _uid("registrations-")
    query = f"""fromCategory('{category}').when({{
      Registered: (s, e) => {{ linkTo('{links}', e); }}
    }})"""
    await api.ok("projection_create", {"name": name, "query": query, "emit_enabled": True})
    await _caught_up(api, name)
    read = await api.ok("read_stream", {"stream": links})
    assert [e["event_type"] for e in read["events"]] == ["$>", "$>"]
    assert read["events"][0]["content_type"] == "text/plain"
    link_positions = [e["position"] for e in read["events"]]
    resolved = await api.ok("read_stream", {"stream": links, "resolve_links": True})
    assert [(e["stream_id"], e["version"], e["event_type"]) for e in resolved["events"]] == [
        (f"{category}-1", 0, "Registered"),
        (f"{category}-2", 0, "Registered"),
    ]
    assert [e["position"] for e in resolved["events"]] == link_positions
    everything = await api.ok(
        "read_all",
        {"from_position": link_positions[0], "limit": 2, "resolve_links": True},
    )
    assert [e["stream_id"] for e in everything["events"]] == [f"{category}-1", f"{category}-2"]
    # A link to an event that is no longer readable resolves to nothing.
    await api.ok("delete_stream", {"stream": f"{category}-1"})
    after = await api.ok("read_stream", {"stream": links, "resolve_links": True})
    assert [e["stream_id"] for e in after["events"]] == [f"{category}-2"]


async def test_faulting_projection_beside_a_healthy_one(api: Api) -> None:
    stream = _uid("t-")
    await _append(api, stream, ("Ok", {}), ("Bad", {}), ("Ok", {}))
    healthy, throws, loops, bomb = (_uid(p) for p in ("healthy-", "throw-", "loop-", "bomb-"))
    on = f"fromStream('{stream}')"
    await api.ok(
        "projection_create",
        {
            "name": throws,
            "query": on
            + """.when({
      Bad: function (s, e) { throw new Error('cannot take ' + e.eventType); }
    })""",
        },
    )
    await api.ok(
        "projection_create",
        {"name": loops, "query": on + ".when({Bad: () => { while (true) {} }})"},
    )
    await api.ok(
        "projection_create",
        {
            "name": bomb,
            "query": on
            + ".when({Bad: () => { var a = []; while (true) a.push(new Array(1e5).fill(1)); }})",
        },
    )
    await api.ok(
        "projection_create",
        {"name": healthy, "query": on + ".when({$init: () => 0, $any: (s) => s + 1})"},
    )
    bad_position = (await api.ok("read_stream", {"stream": stream}))["events"][1]["position"]
    thrown = await _faulted(api, throws)
    assert "cannot take Bad" in thrown["reason"]
    assert thrown["fault_position"] == bad_position
    looped = await _faulted(api, loops)
    assert "time limit" in looped["reason"] and looped["fault_position"] == bad_position
    bombed = await _faulted(api, bomb)
    assert "memory limit" in bombed["reason"]
    await _caught_up(api, healthy)
    assert await _state(api, healthy) == 3
    # The others keep running: a new event reaches the healthy one.
    await _append(api, stream, ("Ok", {}))
    await wait_until(
        lambda: _state_is(api, healthy, 4), timeout=TIMEOUT_S, what="the healthy one to go on"
    )


async def _state_is(api: Api, name: str, value: Any) -> bool:
    return bool(await _state(api, name) == value)


async def test_bad_requests_are_typed(api: Api) -> None:
    bad = await api.error(
        "projection_create",
        {"name": _uid("p-"), "query": "fromAll().when({\n$any: (s, e) => { s +\n})"},
    )
    assert bad["code"] == "invalid_request"
    assert bad["details"]["field"] == "query" and bad["details"]["line"] == 3
    assert "SyntaxError" in bad["details"]["error"]
    no_source = await api.error("projection_create", {"name": _uid("p-"), "query": "var x = 1;"})
    assert no_source["code"] == "invalid_request" and "source" in no_source["message"]
    name = _uid("dup-")
    await api.ok("projection_create", {"name": name, "query": "fromAll().when({})"})
    dup = await api.error("projection_create", {"name": name, "query": "fromAll().when({})"})
    assert (dup["code"], dup["details"]["field"]) == ("already_exists", "name")
    for op in ("projection_info", "projection_state", "projection_reset", "projection_delete"):
        missing = await api.error(op, {"name": _uid("none-")})
        assert missing["code"] == "not_found", op
    start = await api.error(
        "projection_create", {"name": _uid("p-"), "query": "fromAll()", "start": "middle"}
    )
    assert (start["code"], start["details"]["field"]) == ("invalid_request", "start")
    empty = await api.error("projection_create", {"name": "", "query": "fromAll()"})
    assert empty["details"]["field"] == "name"


async def test_lifecycle_update_disable_enable_reset_delete(api: Api) -> None:
    stream = _uid("life-")
    await _append(api, stream, ("A", {}), ("A", {}))
    name = _uid("life-")
    await api.ok(
        "projection_create",
        {
            "name": name,
            "query": f"fromStream('{stream}').when({{$init: () => 0, A: (s) => s + 1}})",
        },
    )
    await _caught_up(api, name)
    assert await _state(api, name) == 2
    disabled = await api.ok("projection_disable", {"name": name})
    assert disabled["status"] == "stopped"
    await _append(api, stream, ("A", {}))
    assert (await _info(api, name))["lag"] > 0 and await _state(api, name) == 2
    updated = await api.ok(
        "projection_update",
        {
            "name": name,
            "query": f"fromStream('{stream}').when({{$init: () => 0, A: (s) => s + 10}})",
        },
    )
    assert "+ 10" in updated["query"]
    await api.ok("projection_enable", {"name": name})
    await _caught_up(api, name)
    assert await _state(api, name) == 12  # kept its state, the new query from the checkpoint
    await api.ok("projection_reset", {"name": name})
    await _caught_up(api, name)
    assert await _state(api, name) == 30  # all three again, under the new query
    await api.ok("projection_delete", {"name": name})
    assert (await api.error("projection_info", {"name": name}))["code"] == "not_found"


async def test_client_methods(stack: Stack) -> None:
    async with Client.connect(stack.url) as client:
        stream = _uid("cl-")
        await client.append(stream, [NewEvent("Hit", {}), NewEvent("Hit", {})])
        name = _uid("client-")
        created = await client.create_projection(
            name, f"fromStream('{stream}').when({{$init: () => 0, Hit: (s) => s + 1}})"
        )
        assert created.name == name

        async def counted() -> bool:
            return (await client.projection_state(name)) == 2

        await wait_until(counted, timeout=TIMEOUT_S, what="the client's projection")
        assert (await client.projection_result(name)) == 2
        assert name in [p.name for p in await client.list_projections()]
        info = await client.projection_info(name)
        assert info.events_processed == 2 and info.status == "running"
        assert (await client.disable_projection(name)).status == "stopped"
        assert (await client.enable_projection(name)).status == "running"
        await client.reset_projection(name)
        updated = await client.update_projection(name, emit_enabled=True)
        assert updated.emit_enabled is True
        await client.delete_projection(name)


async def _first(subscription: Any, count: int) -> list[Any]:
    got: list[Any] = []
    async for item in subscription:
        if isinstance(item, RecordedEvent):
            got.append(item)
            if len(got) == count:
                return got
    return got


async def test_emitted_and_linked_events_reach_subscriptions(stack: Stack) -> None:
    category = _uid("pay")
    derived, links, name = _uid("paid-"), _uid("paylinks-"), _uid("payments-")
    async with Client.connect(stack.url) as client:
        emitted = await client.subscribe(stream=derived)  # live only: what comes from now on
        linked = await client.subscribe(stream=links, from_position="start", resolve_links=True)
        async with emitted, linked:
            await client.append(f"{category}-1", [NewEvent("Paid", {"amount": 3})])
            query = f"""fromCategory('{category}').when({{
              Paid: (s, e) => {{
                emit('{derived}', 'PaymentSeen', {{ amount: e.data.amount }});
                linkTo('{links}', e);
              }}
            }})"""
            await client.create_projection(name, query, emit_enabled=True)
            live = await asyncio.wait_for(_first(emitted, 1), TIMEOUT_S)
            assert [(e.event_type, e.json()) for e in live] == [("PaymentSeen", {"amount": 3})]
            resolved = await asyncio.wait_for(_first(linked, 1), TIMEOUT_S)
            assert [(e.stream_id, e.event_type, e.json()) for e in resolved] == [
                (f"{category}-1", "Paid", {"amount": 3})
            ]
            link_page = await client.read_stream(links)
            assert resolved[0].position == link_page.events[0].position
        group = _uid("linked-group-")
        info = await client.create_subscription(group, stream=links, resolve_links=True)
        assert info.resolve_links
        async with client.consume(group) as consumer, asyncio.timeout(TIMEOUT_S):
            delivered = await anext(consumer)
            assert (delivered.event.stream_id, delivered.event.event_type) == (
                f"{category}-1",
                "Paid",
            )
            assert delivered.position == link_page.events[0].position
            consumer.ack(delivered)


DOCS = Path(__file__).resolve().parents[2] / "docs" / "projections.md"
_EXAMPLE = re.compile(
    r"<!-- projection: (?P<name>\S+)(?P<emit> emit)? -->\s*```js\n(?P<query>.*?)```"
    r"(?P<checks>(?:\s*<!-- (?:state|result|stream)[^>]*-->\s*```json\n.*?```)+)",
    re.S,
)
_CHECK = re.compile(
    r"<!-- (?P<kind>state|result|stream) ?(?P<arg>[^>]*?) -->\s*```json\n(?P<want>.*?)```", re.S
)


async def test_the_documented_examples_run(stack: Stack, api: Api) -> None:
    text = DOCS.read_text()
    store = _uid("docs")
    await api.ok("store_create", {"store": store}, store="_sys")
    docs = Api(api.nc, store)
    fixture = re.search(r"<!-- events -->\s*```json\n(.*?)```", text, re.S)
    assert fixture is not None
    events = json.loads(fixture[1])
    for stream, kind, data in events:
        await _append(docs, stream, (kind, data))
    examples = list(_EXAMPLE.finditer(text))
    assert len(examples) == 6
    for example in examples:
        name = example["name"]
        await docs.ok(
            "projection_create",
            {"name": name, "query": example["query"], "emit_enabled": bool(example["emit"])},
        )
    for example in examples:
        name = example["name"]
        await _caught_up(docs, name)
        for check in _CHECK.finditer(example["checks"]):
            want = json.loads(check["want"])
            arg = check["arg"].strip()
            if check["kind"] == "stream":
                read = await docs.ok("read_stream", {"stream": arg, "resolve_links": True})
                got = [[e["event_type"], e["data"]] for e in read["events"]]
            else:
                body: dict[str, Any] = {"name": name}
                if arg:
                    body["partition"] = arg.removeprefix("partition=")
                got = (await docs.ok(f"projection_{check['kind']}", body))[check["kind"]]
            assert got == want, (name, check["kind"], arg)


async def test_backfill_over_history_while_appends_continue(api: Api) -> None:
    category = _uid("hist")
    for batch in range(10):
        events = [("Tick", {"n": batch * 100 + i}) for i in range(100)]
        await _append(api, f"{category}-{batch}", *events)
    name = _uid("backfill-")
    query = f"fromCategory('{category}').when({{$init: () => 0, Tick: (s) => s + 1}})"
    await api.ok("projection_create", {"name": name, "query": query})
    appended = 1000
    for n in range(50):  # while the projection reads the history
        await _append(api, f"{category}-live{n % 5}", ("Tick", {"n": n}))
        appended += 1
    await wait_until(
        lambda: _state_is(api, name, appended), timeout=TIMEOUT_S, what="every event counted"
    )
    info = await _caught_up(api, name)
    assert info["events_processed"] == appended and await _state(api, name) == appended
