"""Snapshots end to end over NATS: JSON requests as any client sends them, the Python client,
every error code, retention under concurrent records, and read-your-writes on a cluster."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from esdb.client import Client, InvalidRequest, NotFound, TooLarge
from esdb.contracts.snapshots import SnapshotKey
from tests.stack import Api, Stack, connect_api, start_stack
from tests.system.cluster import leader_index


def _uid(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with Client.connect(stack.url) as connected:
        yield connected


def snap(source: str, stream: str, version: Any, **extra: Any) -> dict[str, Any]:
    return {"source_uuid": source, "stream_uuid": stream, "version": version, **extra}


# ---- JSON ----------------------------------------------------------------------------------


async def test_json_record_read_list_delete(api: Api) -> None:
    source, stream = _uid("order-"), _uid()
    recorded = await api.ok(
        "snapshot_record", snap(source, stream, 4, data={"total": 4}, metadata={"by": "me"})
    )
    assert recorded["version"] == 4
    # stored as sent: json.dumps puts a space after each colon
    assert recorded["size"] == len('{"total": 4}') + len('{"by": "me"}')
    assert recorded["created"].endswith("Z")
    await api.ok("snapshot_record", snap(source, stream, 12, data={"total": 12}))

    exact = await api.ok("snapshot_read", snap(source, stream, 4))
    assert exact == {
        **snap(source, stream, 4),
        "data": {"total": 4},
        "metadata": {"by": "me"},
        "content_type": "application/json",
        "created": recorded["created"],
    }
    latest = await api.ok("snapshot_read", {"source_uuid": source, "stream_uuid": stream})
    assert (latest["version"], latest["data"], latest["metadata"]) == (12, {"total": 12}, None)
    assert (await api.ok("snapshot_read", snap(source, stream, "latest")))["version"] == 12

    listed = await api.ok("snapshot_list", {"source_uuid": source})
    assert [s["version"] for s in listed["snapshots"]] == [4, 12]
    assert listed["next"] is None
    assert "data" not in listed["snapshots"][0]

    assert await api.ok("snapshot_delete", snap(source, stream, 12)) == snap(source, stream, 12)
    latest = await api.ok("snapshot_read", snap(source, stream, "latest"))
    assert latest["version"] == 4


async def test_json_binary_content_travels_as_base64(api: Api) -> None:
    source, stream = _uid(), _uid()
    blob = bytes(range(256))
    encoded = base64.b64encode(blob).decode()
    await api.ok(
        "snapshot_record",
        snap(source, stream, 1, data=encoded, content_type="application/octet-stream"),
    )
    read = await api.ok("snapshot_read", snap(source, stream, 1))
    assert base64.b64decode(read["data"]) == blob
    assert read["content_type"] == "application/octet-stream"


async def test_json_list_filters_and_pages(api: Api) -> None:
    first, second, stream, other = _uid("a"), _uid("b"), _uid("s"), _uid("t")
    for source, on, version in [
        (first, stream, 1),
        (first, stream, 2),
        (first, other, 1),
        (second, stream, 3),
    ]:
        await api.ok("snapshot_record", snap(source, on, version, data=version))

    def keys(page: dict[str, Any]) -> list[tuple[str, str, int]]:
        return [(s["source_uuid"], s["stream_uuid"], s["version"]) for s in page["snapshots"]]

    by_source = await api.ok("snapshot_list", {"source_uuid": first})
    assert sorted(keys(by_source)) == [(first, stream, 1), (first, stream, 2), (first, other, 1)]
    both = await api.ok("snapshot_list", {"source_uuid": first, "stream_uuid": stream})
    assert keys(both) == [(first, stream, 1), (first, stream, 2)]
    by_stream = await api.ok("snapshot_list", {"stream_uuid": stream})
    assert keys(by_stream) == [(first, stream, 1), (first, stream, 2), (second, stream, 3)]

    paged: list[tuple[str, str, int]] = []
    after = None
    while True:
        page = await api.ok("snapshot_list", {"stream_uuid": stream, "limit": 2, "after": after})
        paged += keys(page)
        if page["next"] is None:
            break
        after = page["next"]
    assert paged == keys(by_stream)


ERRORS: list[tuple[str, dict[str, Any], str, str]] = [
    ("snapshot_read", snap("nobody", "nothing", 1), "not_found", "version"),
    ("snapshot_read", snap("nobody", "nothing", "latest"), "not_found", "version"),
    ("snapshot_delete", snap("nobody", "nothing", 1), "not_found", "version"),
    ("snapshot_record", snap("s", "t", 1), "invalid_request", "data"),
    ("snapshot_record", snap("", "t", 1, data=1), "invalid_request", "source_uuid"),
    ("snapshot_record", snap("s", "t\u0000", 1, data=1), "invalid_request", "stream_uuid"),
    ("snapshot_record", snap("s", "t" * 201, 1, data=1), "invalid_request", "stream_uuid"),
    ("snapshot_record", snap("s", "t", -1, data=1), "invalid_request", "version"),
    ("snapshot_record", snap("s", "t", "1", data=1), "invalid_request", "version"),
    ("snapshot_record", snap("s", "t", 1, data=1, keep_last=0), "invalid_request", "keep_last"),
    (
        "snapshot_record",
        snap("s", "t", 1, data="not base64!", content_type="application/octet-stream"),
        "invalid_request",
        "data",
    ),
    ("snapshot_record", snap("s", "t", 1, data="x" * (1 << 20)), "too_large", "data"),
    ("snapshot_read", snap("s", "t", "newest"), "invalid_request", "version"),
    ("snapshot_read", {"stream_uuid": "t"}, "invalid_request", "source_uuid"),
    ("snapshot_delete", snap("s", "t", "latest"), "invalid_request", "version"),
    ("snapshot_list", {"limit": 0}, "invalid_request", "limit"),
    ("snapshot_list", {"after": {"source_uuid": "s"}}, "invalid_request", "after.stream_uuid"),
]


@pytest.mark.parametrize(("operation", "body", "code", "field"), ERRORS)
async def test_json_errors_are_typed_and_name_the_field(
    api: Api, operation: str, body: dict[str, Any], code: str, field: str
) -> None:
    error = await api.error(operation, body)
    assert (error["code"], error["details"].get("field")) == (code, field), error


async def test_json_malformed_body_and_unknown_store(api: Api) -> None:
    reply = await api.raw("esdb.api.default.snapshot_read", b"{nope")
    assert b'"invalid_request"' in reply and b'"body"' in reply
    error = await api.error("snapshot_read", snap("s", "t", 1), store="nostore")
    assert (error["code"], error["details"]["field"]) == ("not_found", "store")


# ---- Python client -------------------------------------------------------------------------


async def test_client_record_read_list_delete(client: Client) -> None:
    source, stream = _uid(), _uid()
    info = await client.record_snapshot(source, stream, 3, {"n": 3}, metadata={"m": 1})
    assert (info.source_uuid, info.stream_uuid, info.version) == (source, stream, 3)
    await client.record_snapshot(source, stream, 7, b'{"n":7}')

    latest = await client.read_snapshot(source, stream)
    assert (latest.version, latest.json(), latest.metadata_json()) == (7, {"n": 7}, None)
    three = await client.read_snapshot(source, stream, 3)
    assert (three.json(), three.metadata_json()) == ({"n": 3}, {"m": 1})
    assert three.created == info.created

    page = await client.list_snapshots(source_uuid=source, limit=1)
    assert [s.version for s in page.snapshots] == [3]
    assert page.next == SnapshotKey(source_uuid=source, stream_uuid=stream, version=3)
    assert [s.version async for s in client.iter_snapshots(stream_uuid=stream, page_size=1)] == [
        3,
        7,
    ]

    await client.delete_snapshot(source, stream, 7)
    assert (await client.read_snapshot(source, stream)).version == 3
    with pytest.raises(NotFound):
        await client.delete_snapshot(source, stream, 7)


async def test_client_bytes_content_round_trips(client: Client) -> None:
    source, stream = _uid(), _uid()
    blob = bytes(range(256)) * 4
    await client.record_snapshot(source, stream, 1, blob, content_type="application/x-blob")
    read = await client.read_snapshot(source, stream, 1)
    assert (read.data, read.metadata, read.content_type) == (blob, b"", "application/x-blob")


async def test_client_errors_are_typed(client: Client) -> None:
    with pytest.raises(NotFound) as missing:
        await client.read_snapshot(_uid(), _uid())
    assert missing.value.details["field"] == "version"
    with pytest.raises(InvalidRequest) as invalid:
        await client.read_snapshot("", "t")
    assert invalid.value.details["field"] == "source_uuid"
    with pytest.raises(InvalidRequest) as not_json:
        await client.record_snapshot("s", "t", 1, b"{not json")
    assert not_json.value.details["field"] == "data"
    with pytest.raises(TooLarge):
        await client.record_snapshot("s", "t", 1, b'"' + b"x" * (1 << 20) + b'"')


async def test_retention_under_concurrent_records_keeps_exactly_the_last_n(
    client: Client,
) -> None:
    source, stream = _uid(), _uid()
    await asyncio.gather(
        *(client.record_snapshot(source, stream, v, {"v": v}, keep_last=3) for v in range(20))
    )
    page = await client.list_snapshots(source_uuid=source, stream_uuid=stream)
    assert [s.version for s in page.snapshots] == [17, 18, 19]


# ---- three nodes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("cluster")), nodes=3)
    yield running
    assert running.stop() == 0, running.log_tail()


async def test_reads_on_any_node_see_the_write_acknowledged_before_them(cluster: Stack) -> None:
    """Reads land on the three nodes' services in turn (a queue group); each must see the
    record or delete acknowledged just before it, even on a follower that lags."""
    api = await connect_api(cluster.url)
    try:
        source, stream = _uid(), _uid()
        for version in range(30):
            await api.ok("snapshot_record", snap(source, stream, version, data=version))
            latest = await api.ok("snapshot_read", snap(source, stream, "latest"))
            assert latest["version"] == version
            if version % 3 == 2:
                await api.ok("snapshot_delete", snap(source, stream, version))
                error = await api.error("snapshot_read", snap(source, stream, version))
                assert error["code"] == "not_found"
        listed = await api.ok("snapshot_list", {"source_uuid": source})
        assert len(listed["snapshots"]) == 20
    finally:
        await api.nc.close()


async def test_a_lagging_follower_waits_before_it_answers(cluster: Stack) -> None:
    """A follower whose writer is paused has not applied the record yet; reads that land on
    its snapshot service wait for it instead of answering from the old state."""
    api = await connect_api(cluster.url)
    try:
        source, stream = _uid(), _uid()
        await api.ok("snapshot_record", snap(source, stream, 0, data=0))
        leader = await leader_index(api)
        follower = next(n for n in (1, 2, 3) if n != leader)
        pid = cluster.pid("writer", follower)
        os.kill(pid, signal.SIGSTOP)
        try:
            await api.ok("snapshot_record", snap(source, stream, 1, data=1))
            # A queue group spreads these over the three nodes: some reach the paused one.
            reads = [
                asyncio.create_task(api.call("snapshot_read", snap(source, stream, "latest")))
                for _ in range(12)
            ]
            await asyncio.wait(reads, timeout=0.5)
        finally:
            os.kill(pid, signal.SIGCONT)
        replies = await asyncio.gather(*reads)
        assert [reply.get("version") for reply in replies] == [1] * 12, replies
    finally:
        await api.nc.close()
