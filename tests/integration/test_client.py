"""The Python client against a real stack: round trips, paging, concurrency, idempotency,
filters, byte payloads and typed errors."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC

import pytest

from esdb.client import (
    AppendSpec,
    Client,
    EsdbError,
    IdempotencyConflict,
    InvalidRequest,
    NewEvent,
    NotFound,
    ReadFilter,
    StreamNotFound,
    Unavailable,
    WrongExpectedVersion,
)
from esdb.contracts import errors
from esdb.services.supervisor.nats_server import free_port
from tests.stack import Stack


def _name(prefix: str = "client") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def _events(count: int, type_: str = "Happened") -> list[NewEvent]:
    return [NewEvent(type_, {"n": n}) for n in range(count)]


@pytest.fixture(scope="module")
async def client(stack: Stack) -> AsyncIterator[Client]:
    """One client on the session's stack, opened with `async with Client.connect(...)`."""
    async with Client.connect(stack.url) as connected:
        yield connected


async def test_append_then_read_round_trips_data_metadata_and_ids(client: Client) -> None:
    stream = _name("order-")
    event_id = str(uuid.uuid4())
    result = await client.append(
        stream,
        [
            NewEvent("Placed", {"id": 7, "lines": [1, 2]}, metadata={"by": "test"}),
            NewEvent("Paid", b'{"amount":9.5}', event_id=event_id),
        ],
        expected_version="no_stream",
    )
    assert (result.first_version, result.last_version) == (0, 1)
    assert result.last_position == result.first_position + 1

    page = await client.read_stream(stream)
    assert page.last_version == 1
    assert page.next is None
    placed, paid = page.events
    assert (placed.stream_id, placed.version, placed.event_type) == (stream, 0, "Placed")
    assert placed.position == result.first_position
    assert placed.data == b'{"id":7,"lines":[1,2]}'
    assert placed.json() == {"id": 7, "lines": [1, 2]}
    assert placed.metadata_json() == {"by": "test"}
    assert placed.content_type == "application/json"
    assert placed.created.tzinfo is not None
    assert placed.created.utcoffset() == UTC.utcoffset(None)
    assert paid.json() == {"amount": 9.5}
    assert paid.metadata == b""
    assert paid.metadata_json() is None
    assert paid.event_id == event_id
    assert uuid.UUID(placed.event_id).version == 7  # stamped by the writer


async def test_read_stream_pages_forward_and_backward(client: Client) -> None:
    stream = _name()
    await client.append(stream, _events(5))

    first = await client.read_stream(stream, limit=2)
    assert [e.version for e in first.events] == [0, 1]
    assert first.next == 2
    rest = await client.read_stream(stream, from_=first.next, limit=10)
    assert [e.version for e in rest.events] == [2, 3, 4]
    assert rest.next is None

    newest = await client.read_stream(stream, from_="end", direction="backward", limit=2)
    assert [e.version for e in newest.events] == [4, 3]
    assert newest.next == 2
    assert newest.last_version == 4


async def test_iter_stream_pages_through_every_event(client: Client) -> None:
    stream = _name()
    await client.append(stream, _events(7))
    forward = [e.json()["n"] async for e in client.iter_stream(stream, page_size=3)]
    assert forward == list(range(7))
    backward = [
        e.version
        async for e in client.iter_stream(stream, from_="end", direction="backward", page_size=2)
    ]
    assert backward == list(range(6, -1, -1))
    from_middle = [e.version async for e in client.iter_stream(stream, from_=5, page_size=1)]
    assert from_middle == [5, 6]


async def test_retry_with_the_same_event_ids_returns_the_original_result(client: Client) -> None:
    stream = _name()
    events = [NewEvent("Happened", {"n": n}, event_id=str(uuid.uuid4())) for n in range(3)]
    first = await client.append(stream, events, expected_version="no_stream")
    retried = await client.append(stream, events, expected_version="no_stream")
    assert retried == first
    page = await client.read_stream(stream)
    assert [e.event_id for e in page.events] == [e.event_id for e in events]

    overlapping = [events[2], NewEvent("Happened", {"n": 3}, event_id=str(uuid.uuid4()))]
    with pytest.raises(IdempotencyConflict):
        await client.append(stream, overlapping)
    assert (await client.stream_info(stream)).version == 2


async def test_wrong_expected_version_raises_with_the_actual_version(client: Client) -> None:
    stream = _name()
    with pytest.raises(WrongExpectedVersion) as missing:
        await client.append(stream, _events(1), expected_version="stream_exists")
    assert missing.value.details["actual_version"] == -1

    await client.append(stream, _events(2), expected_version="no_stream")
    with pytest.raises(WrongExpectedVersion) as stale:
        await client.append(stream, _events(1), expected_version=0)
    assert stale.value.details["actual_version"] == 1
    assert stale.value.code == errors.ErrorCode.WRONG_EXPECTED_VERSION
    assert isinstance(stale.value, errors.EsdbError)
    assert WrongExpectedVersion is errors.WrongExpectedVersion

    landed = await client.append(stream, _events(1), expected_version=1)
    assert landed.first_version == 2


async def test_append_multi_is_all_or_nothing(client: Client) -> None:
    left, right = _name(), _name()
    results = await client.append_multi(
        [AppendSpec(left, _events(2)), AppendSpec(right, _events(1), expected_version="no_stream")]
    )
    assert [(r.first_version, r.last_version) for r in results] == [(0, 1), (0, 0)]
    assert results[1].first_position == results[0].last_position + 1

    untouched = _name()
    with pytest.raises(WrongExpectedVersion):
        await client.append_multi(
            [
                AppendSpec(untouched, _events(1), expected_version="no_stream"),
                AppendSpec(left, _events(1), expected_version=0),
            ]
        )
    with pytest.raises(StreamNotFound):
        await client.read_stream(untouched)
    assert (await client.stream_info(left)).version == 1


async def test_read_all_filters_on_the_server(client: Client) -> None:
    category = _name("cat")
    first = await client.append(
        f"{category}-1", [NewEvent("OrderPlaced", {"n": 0}), NewEvent("OrderPaid", {"n": 1})]
    )
    await client.append(f"{category}-2", [NewEvent("OrderPlaced", {"n": 2})])
    await client.append(f"{category}x-3", [NewEvent("OrderPlaced", {"n": 3})])
    start = first.first_position

    async def streams_and_types(flt: ReadFilter) -> list[tuple[str, str]]:
        page = await client.read_all(from_position=start, limit=100, filter=flt)
        return [(e.stream_id, e.event_type) for e in page.events]

    assert await streams_and_types(ReadFilter(category=category)) == [
        (f"{category}-1", "OrderPlaced"),
        (f"{category}-1", "OrderPaid"),
        (f"{category}-2", "OrderPlaced"),
    ]
    assert await streams_and_types(
        ReadFilter(stream_prefix=category, event_type_prefix="OrderPa")
    ) == [(f"{category}-1", "OrderPaid")]
    assert await streams_and_types(
        ReadFilter(stream_prefix=category, event_types=["OrderPlaced"])
    ) == [
        (f"{category}-1", "OrderPlaced"),
        (f"{category}-2", "OrderPlaced"),
        (f"{category}x-3", "OrderPlaced"),
    ]
    assert await streams_and_types(ReadFilter(stream_regex=f"^{category}x?-[23]$")) == [
        (f"{category}-2", "OrderPlaced"),
        (f"{category}x-3", "OrderPlaced"),
    ]

    paged = [
        e.json()["n"]
        async for e in client.iter_all(
            from_position=start, page_size=1, filter=ReadFilter(stream_prefix=category)
        )
    ]
    assert paged == [0, 1, 2, 3]
    newest = await client.read_all(
        from_position="end",
        direction="backward",
        limit=1,
        filter=ReadFilter(category=category),
    )
    assert [(e.stream_id, e.json()) for e in newest.events] == [(f"{category}-2", {"n": 2})]


async def test_bytes_data_with_a_non_json_content_type_round_trips(client: Client) -> None:
    stream = _name()
    payload = b"\x00\xff\x80 not json \x0a"
    await client.append(
        stream,
        [
            NewEvent(
                "Blob",
                payload,
                metadata=b"\x01\x02",
                content_type="application/octet-stream",
            )
        ],
    )
    (event,) = (await client.read_stream(stream)).events
    assert event.data == payload
    assert event.metadata == b"\x01\x02"
    assert event.content_type == "application/octet-stream"
    with pytest.raises(TypeError):
        NewEvent("Blob", {"not": "bytes"}, content_type="application/octet-stream").data_bytes()


async def test_json_content_must_be_valid_json(client: Client) -> None:
    stream = _name()
    with pytest.raises(InvalidRequest) as invalid:
        await client.append(stream, [NewEvent("Broken", b"{not json")])
    assert invalid.value.details["field"] == "events[0].data"
    with pytest.raises(StreamNotFound):
        await client.stream_info(stream)


async def test_min_position_reads_your_writes(client: Client) -> None:
    stream = _name()
    result = await client.append(stream, _events(1))
    page = await client.read_stream(stream, min_position=result.last_position)
    assert [e.position for e in page.events] == [result.last_position]
    everything = await client.read_all(
        from_position=result.last_position, limit=1, min_position=result.last_position
    )
    assert [e.stream_id for e in everything.events] == [stream]


async def test_list_streams_pages_in_name_order_and_stream_info(client: Client) -> None:
    prefix = _name("ls") + "-"
    for suffix, count in (("a", 1), ("b", 2), ("c", 3)):
        await client.append(prefix + suffix, _events(count))

    first = await client.list_streams(after=prefix, limit=2)
    assert [(s.stream, s.version) for s in first.streams] == [
        (prefix + "a", 0),
        (prefix + "b", 1),
    ]
    assert first.next == prefix + "b"
    second = await client.list_streams(after=first.next, limit=1)
    assert [s.stream for s in second.streams] == [prefix + "c"]

    listed = []
    async for summary in client.iter_streams(after=prefix, page_size=1):
        if not summary.stream.startswith(prefix):
            break
        listed.append(summary.stream)
    assert listed == [prefix + "a", prefix + "b", prefix + "c"]

    info = await client.stream_info(prefix + "c")
    assert (info.stream, info.version, info.state) == (prefix + "c", 2, "active")
    with pytest.raises(StreamNotFound) as missing:
        await client.stream_info(prefix + "zzz")
    assert missing.value.code == errors.ErrorCode.STREAM_NOT_FOUND


async def test_cluster_status_and_health(client: Client) -> None:
    status = await client.cluster_status()
    assert status.leader is not None
    leader = next(node for node in status.nodes if node.node_id == status.leader)
    assert leader.role == "leader"
    assert leader.applied_sequence >= 1
    assert leader.lag >= 0
    assert "default" in leader.stores
    health = await client.health()
    assert health.status == "ok"
    assert health.leader == status.leader
    assert health.readers >= 1


async def test_an_unknown_store_is_not_found(stack: Stack) -> None:
    async with Client.connect(stack.url, store=_name("nostore")) as other:
        with pytest.raises(NotFound):
            await other.list_streams()


async def test_awaited_connect_and_close(stack: Stack) -> None:
    connected = await Client.connect(stack.url, timeout=2.0)
    assert connected.url == stack.url
    assert (await connected.health()).status == "ok"
    await connected.close()
    with pytest.raises(EsdbError):
        await connected.health()


async def test_connecting_to_nothing_fails_fast_with_unavailable() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(Unavailable) as refused:
        await Client.connect(url, timeout=5.0)
    assert time.monotonic() - started < 4.0
    assert url in refused.value.message
