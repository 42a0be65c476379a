"""DCB against a real stack: tagged events, conditional appends and reads by query, over the
public JSON API and through the Python client; bad input gets `invalid_request` naming the
field; concurrent conflicting decisions against a reference model."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from esdb.client import (
    AppendConditionFailed,
    Client,
    DcbCondition,
    DcbEvent,
    DcbQuery,
    DcbQueryItem,
    InvalidRequest,
    NewEvent,
)
from esdb.contracts.dcb import MAX_TAG_BYTES, MAX_TAGS
from tests.stack import Api, Stack


def _name(prefix: str = "dcb") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    """A client on a store of its own, so positions start at 1."""
    store = _name()
    async with Client.connect(stack.url, store=store) as connected:
        await connected.create_store(store)
        yield connected
        await connected.remove_store(store)


@pytest.fixture
async def store_api(api: Api, client: Client) -> Api:
    """JSON request-reply on the client's store."""
    return Api(api.nc, client.store)


def _tagged(type_: str, *tags: str, data: Any = None) -> dict[str, Any]:
    return {"type": type_, "data": data or {}, "tags": list(tags)}


async def test_json_api_appends_reads_and_refuses_by_condition(
    store_api: Api, client: Client
) -> None:
    await client.append("order-1", [NewEvent("Placed", {})])  # a stream event: position 1
    first = await store_api.ok(
        "dcb_append", {"events": [_tagged("CourseDefined", "course-1", data={"places": 2})]}
    )
    assert first == {"position": 2}
    refused = await store_api.error(
        "dcb_append",
        {
            "events": [_tagged("CourseDefined", "course-1")],
            "condition": {"fail_if_events_match": {"items": [{"tags": ["course-1"]}]}},
        },
    )
    assert refused["code"] == "append_condition_failed"
    assert refused["details"]["position"] == 2
    accepted = await store_api.ok(
        "dcb_append",
        {
            "events": [_tagged("StudentJoined", "course-1", "student-7")],
            "condition": {
                "fail_if_events_match": {
                    "items": [{"types": ["CourseDefined"], "tags": ["course-1"]}]
                },
                "after": 2,
            },
        },
    )
    assert accepted == {"position": 3}
    page = await store_api.ok(
        "dcb_read", {"query": {"items": [{"tags": ["course-1"]}]}, "after": 0}
    )
    assert page["head"] == 3
    assert [(e["position"], e["type"], e["tags"], e["data"]) for e in page["events"]] == [
        (2, "CourseDefined", ["course-1"], {"places": 2}),
        (3, "StudentJoined", ["course-1", "student-7"], {}),
    ]
    # The stream event is not a DCB event, though it is in $all, where tags come back too.
    everything = await store_api.ok("dcb_read", {})
    assert [e["position"] for e in everything["events"]] == [2, 3]
    assert everything["more"] is False
    backward = await store_api.ok("dcb_read", {"direction": "backward", "limit": 1})
    assert [e["position"] for e in backward["events"]] == [3]
    assert backward["more"] is True
    log = await store_api.ok("read_all", {"from_position": "start"})
    assert [(e["stream_id"], e.get("tags")) for e in log["events"]] == [
        ("order-1", None),
        ("$dcb", ["course-1"]),
        ("$dcb", ["course-1", "student-7"]),
    ]
    # `$dcb` is a stream that reads may name (list_streams shows it), but only dcb_append
    # writes it.
    as_stream = await store_api.ok("read_stream", {"stream": "$dcb"})
    assert [(e["version"], e["tags"]) for e in as_stream["events"]] == [
        (0, ["course-1"]),
        (1, ["course-1", "student-7"]),
    ]
    info = await store_api.ok("stream_info", {"stream": "$dcb"})
    assert info["version"] == 1
    for operation, body in (
        ("append", {"stream": "$dcb", "events": [{"type": "T", "data": {}}]}),
        ("delete_stream", {"stream": "$dcb"}),
        ("set_stream_metadata", {"stream": "$dcb", "metadata": {"max_count": 1}}),
    ):
        refused_write = await store_api.error(operation, body)
        assert (refused_write["code"], refused_write["details"]["field"]) == (
            "invalid_request",
            "stream",
        ), operation


async def test_client_round_trip_and_typed_condition_failure(client: Client) -> None:
    position = await client.dcb_append(
        [
            DcbEvent(
                "SeatClaimed", b"\x00raw", content_type="application/octet-stream", tags=["seat-1"]
            )
        ]
    )
    assert position == 1
    claim_again = DcbCondition(DcbQuery([DcbQueryItem(types=["SeatClaimed"], tags=["seat-1"])]))
    with pytest.raises(AppendConditionFailed) as refused:
        await client.dcb_append([DcbEvent("SeatClaimed", {}, tags=["seat-1"])], claim_again)
    assert refused.value.position == 1
    page = await client.dcb_read(DcbQuery([DcbQueryItem(tags=["seat-1"])]), min_position=1)
    assert page.head == 1
    assert [(e.position, e.type, e.tags, e.data) for e in page.events] == [
        (1, "SeatClaimed", ["seat-1"], b"\x00raw")
    ]
    empty = await client.dcb_read(DcbQuery([DcbQueryItem(tags=["nobody"])]))
    assert (empty.events, empty.head) == ([], 1)


async def test_a_condition_on_a_tag_that_does_not_exist_yet(client: Client) -> None:
    unique = DcbCondition(DcbQuery([DcbQueryItem(types=["UserRegistered"], tags=["email:a@b"])]))
    assert await client.dcb_append([DcbEvent("UserRegistered", {}, tags=["email:a@b"])], unique)
    with pytest.raises(AppendConditionFailed):
        await client.dcb_append([DcbEvent("UserRegistered", {}, tags=["email:a@b"])], unique)


async def test_a_retried_append_with_the_same_ids_lands_once(client: Client) -> None:
    event = DcbEvent("Booked", {}, tags=["slot-3"], event_id=str(uuid.uuid4()))
    boundary = DcbCondition(DcbQuery([DcbQueryItem(tags=["slot-3"])]))
    first = await client.dcb_append([event], boundary)
    assert await client.dcb_append([event], boundary) == first
    assert len((await client.dcb_read()).events) == 1


@pytest.mark.parametrize(
    ("operation", "body", "field"),
    [
        ("dcb_append", {"events": []}, "events"),
        ("dcb_append", {"events": [_tagged("T", "")]}, "events[0].tags[0]"),
        ("dcb_append", {"events": [_tagged("T", "x" * (MAX_TAG_BYTES + 1))]}, "events[0].tags[0]"),
        ("dcb_append", {"events": [_tagged("T", "a\x00b")]}, "events[0].tags[0]"),
        (
            "dcb_append",
            {"events": [_tagged("T", *(f"t{n}" for n in range(MAX_TAGS + 1)))]},
            "events[0].tags",
        ),
        ("dcb_append", {"events": [{"type": "T", "tags": "abc"}]}, "events[0].tags"),
        (
            "dcb_append",
            {
                "events": [_tagged("T")],
                "condition": {"fail_if_events_match": {"items": [{"tags": [""]}]}},
            },
            "condition.fail_if_events_match.items[0].tags[0]",
        ),
        (
            "dcb_append",
            {"events": [_tagged("T")], "condition": {"after": -1}},
            "condition.after",
        ),
        ("dcb_read", {"query": {"items": [{"types": [""]}]}}, "query.items[0].types[0]"),
        ("dcb_read", {"query": {"items": [{"tags": 5}]}}, "query.items[0].tags"),
        ("dcb_read", {"after": -2}, "after"),
        ("dcb_read", {"limit": 0}, "limit"),
        ("dcb_read", {"direction": "sideways"}, "direction"),
    ],
)
async def test_bad_input_names_the_field(
    store_api: Api, operation: str, body: dict[str, Any], field: str
) -> None:
    error = await store_api.error(operation, body)
    assert (error["code"], error["details"].get("field")) == ("invalid_request", field)
    assert (await store_api.ok("dcb_read", {}))["events"] == []  # nothing landed; still serving


async def test_the_client_raises_invalid_request_for_a_bad_tag(client: Client) -> None:
    with pytest.raises(InvalidRequest):
        await client.dcb_append([DcbEvent("T", {}, tags=["x" * (MAX_TAG_BYTES + 1)])])


async def test_concurrent_decisions_against_a_reference_model(stack: Stack, client: Client) -> None:
    """Rounds of decisions sent at once from separate connections, each read-then-append
    with a condition after the head it read: pairs on one resource conflict, decisions on
    resources of their own do not. Exactly one of each conflicting pair wins, no other
    decision is refused, and the log agrees with a model that replays it."""
    rng = random.Random(17)
    clients = [await Client.connect(stack.url, store=client.store) for _ in range(8)]
    decided: list[tuple[DcbCondition, int | None, str]] = []
    try:
        for round_ in range(12):
            head = (await client.dcb_read(limit=1, direction="backward")).head
            plans: list[tuple[str, str]] = []  # (resource, decision id)
            for pair in range(rng.randint(1, 4)):
                contested = f"r{round_}-{pair}"
                plans += [(contested, "a"), (contested, "b")]
            plans += [(f"own-{round_}-{n}", "solo") for n in range(rng.randint(1, 4))]
            rng.shuffle(plans)

            async def decide(
                index: int, resource: str, head: int | None
            ) -> tuple[DcbCondition, int | None, str]:
                boundary = DcbCondition(DcbQuery([DcbQueryItem(tags=[resource])]), after=head)
                event = DcbEvent("Decided", {"by": index}, tags=[resource, "decision"])
                try:
                    return (
                        boundary,
                        await clients[index % len(clients)].dcb_append([event], boundary),
                        resource,
                    )
                except AppendConditionFailed:
                    return boundary, None, resource

            outcomes = await asyncio.gather(
                *(decide(n, resource, head) for n, (resource, _) in enumerate(plans))
            )
            decided += outcomes
            for resource in {r for r, who in plans if who != "solo"}:
                won = [p for _, p, r in outcomes if r == resource and p is not None]
                assert len(won) == 1, (resource, outcomes)
            for resource in {r for r, who in plans if who == "solo"}:
                assert next(p for _, p, r in outcomes if r == resource) is not None
    finally:
        for other in clients:
            await other.close()
    log = (await client.dcb_read(limit=10_000)).events
    model: list[tuple[int, list[str]]] = []  # the events a replay accepts, in order
    for event in log:
        model.append((event.position, event.tags))
    accepted = {p for _, p, _ in decided if p is not None}
    assert {p for p, _ in model} == accepted  # every success is in the log, nothing else
    for condition, position, resource in decided:
        matches_after = [
            p
            for p, tags in model
            if p > (condition.after or 0)
            and resource in tags
            and (position is None or p < position)
        ]
        if position is None:
            assert matches_after, f"{resource} was refused with nothing matching after its head"
        else:
            assert not matches_after, f"{resource} at {position} ignored {matches_after}"
