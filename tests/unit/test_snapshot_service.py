"""The snapshot service's core without NATS: requests decoded as the wire delivers them, ops
applied to an in-memory catalog as the writer leader would, every error code and field."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import pytest

from esdb.contracts.errors import EsdbError, InvalidRequest, NotFound, Timeout, TooLarge
from esdb.contracts.log import LogEntry, LogOp, SnapshotOp
from esdb.services.snapshot.service import SnapshotService
from esdb.services.writer.apply import apply_entry
from esdb.shared.storage.catalog import Catalog
from esdb.shared.wire import Codec, decode_request, encode
from tests.builders import NOW_US

STORE = "default"
MAX_BYTES = 1_000


class Node:
    """One node whose writer applies every submitted op at once; catching up is free unless
    a test says the node lags."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.submitted: list[LogOp] = []
        self.catch_ups: list[float] = []
        self.lagging = False
        self.clock = NOW_US

    async def submit(self, ops: list[LogOp], timeout: float) -> None:
        self.submitted.extend(ops)
        apply_entry(self.catalog, self.catalog.applied_sequence() + 1, LogEntry(ops=ops))

    async def catch_up(self, timeout: float) -> None:
        self.catch_ups.append(timeout)
        if self.lagging:
            raise Timeout("behind", sequence=9, applied_sequence=1)

    def now_us(self) -> int:
        self.clock += 1
        return self.clock


@pytest.fixture
def node(catalog: Catalog) -> Node:
    return Node(catalog)


@pytest.fixture
def service(node: Node) -> SnapshotService:
    return SnapshotService(
        node.catalog.get,
        node.submit,
        node.catch_up,
        max_bytes=MAX_BYTES,
        timeout_ms=2_000,
        now_us=node.now_us,
    )


def wire(body: dict[str, Any], codec: Codec) -> bytes:
    return encode(body, codec)


async def call(
    service: SnapshotService,
    operation: str,
    body: dict[str, Any],
    codec: Codec = Codec.JSON,
    store: str = STORE,
) -> Any:
    """Decode `body` as the service's handler would, answer, and return the reply decoded
    to plain values."""
    request_type, answer = service.operations()[f"snapshot_{operation}"]
    request = decode_request(wire(body, codec), request_type, codec)
    reply = encode(await answer(store, request, codec), codec)
    if codec is Codec.JSON:
        return json.loads(reply)
    return msgspec.msgpack.decode(reply)


def snap(version: int | str, **extra: Any) -> dict[str, Any]:
    return {"source_uuid": "src", "stream_uuid": "str", "version": version, **extra}


async def test_record_then_read_a_version_and_the_latest(service: SnapshotService) -> None:
    recorded = await call(service, "record", snap(1, data={"total": 1}, metadata={"by": "t"}))
    await call(service, "record", snap(10, data={"total": 10}))
    await call(service, "record", snap(2, data={"total": 2}))
    assert recorded["version"] == 1
    assert recorded["size"] == len(b'{"total":1}') + len(b'{"by":"t"}')
    assert recorded["content_type"] == "application/json"

    one = await call(service, "read", snap(1))
    assert (one["data"], one["metadata"]) == ({"total": 1}, {"by": "t"})
    assert one["created"] == recorded["created"]
    latest = await call(service, "read", {"source_uuid": "src", "stream_uuid": "str"})
    assert (latest["version"], latest["data"], latest["metadata"]) == (10, {"total": 10}, None)


async def test_recording_a_version_again_replaces_it(service: SnapshotService) -> None:
    await call(service, "record", snap(1, data={"n": "old"}))
    await call(service, "record", snap(1, data={"n": "new"}))
    assert (await call(service, "read", snap(1)))["data"] == {"n": "new"}
    assert len((await call(service, "list", {}))["snapshots"]) == 1


async def test_msgpack_carries_bytes_and_json_carries_base64(service: SnapshotService) -> None:
    blob = bytes(range(256))
    await call(
        service,
        "record",
        snap(1, data=blob, metadata=b"\x00m", content_type="application/octet-stream"),
        Codec.MSGPACK,
    )
    packed = await call(service, "read", snap(1), Codec.MSGPACK)
    assert (packed["data"], packed["metadata"]) == (blob, b"\x00m")
    as_json = await call(service, "read", snap(1))
    assert base64.b64decode(as_json["data"]) == blob
    assert as_json["content_type"] == "application/octet-stream"

    await call(
        service,
        "record",
        snap(2, data=base64.b64encode(b"raw").decode(), content_type="text/plain"),
    )
    assert (await call(service, "read", snap(2), Codec.MSGPACK))["data"] == b"raw"


async def test_msgpack_json_content_may_be_a_value_or_its_encoding(
    service: SnapshotService,
) -> None:
    await call(service, "record", snap(1, data={"a": [1, 2]}), Codec.MSGPACK)
    await call(service, "record", snap(2, data=b'{"b":true}'), Codec.MSGPACK)
    assert (await call(service, "read", snap(1), Codec.MSGPACK))["data"] == b'{"a":[1,2]}'
    assert (await call(service, "read", snap(2)))["data"] == {"b": True}


async def test_the_created_time_is_stamped_into_the_op(
    service: SnapshotService, node: Node
) -> None:
    recorded = await call(service, "record", snap(1, data=1))
    (op,) = node.submitted
    assert isinstance(op, SnapshotOp)
    assert op.created_us == node.clock
    assert recorded["created"].startswith("2023-11-14T22:13:20.")


async def test_delete_removes_one_version(service: SnapshotService, node: Node) -> None:
    await call(service, "record", snap(1, data=1))
    await call(service, "record", snap(2, data=2))
    deleted = await call(service, "delete", snap(2))
    assert deleted == snap(2)
    assert (await call(service, "read", {"source_uuid": "src", "stream_uuid": "str"}))[
        "version"
    ] == 1
    with pytest.raises(NotFound) as caught:
        await call(service, "read", snap(2))
    assert caught.value.details == {**snap(2), "field": "version"}


async def test_deleting_a_missing_snapshot_is_not_found_and_logs_nothing(
    service: SnapshotService, node: Node
) -> None:
    with pytest.raises(NotFound) as caught:
        await call(service, "delete", snap(5))
    assert caught.value.details["field"] == "version"
    assert node.submitted == []


async def test_latest_of_nothing_is_not_found(service: SnapshotService) -> None:
    await call(service, "record", snap(1, stream_uuid="strx", data=1))
    with pytest.raises(NotFound) as caught:
        await call(service, "read", {"source_uuid": "src", "stream_uuid": "str"})
    assert caught.value.details["version"] == "latest"


async def test_an_unknown_store_is_not_found(service: SnapshotService, node: Node) -> None:
    for operation, body in [
        ("record", snap(1, data=1)),
        ("read", snap(1)),
        ("delete", snap(1)),
        ("list", {}),
    ]:
        with pytest.raises(NotFound) as caught:
            await call(service, operation, body, store="elsewhere")
        assert caught.value.details["field"] == "store"
    assert node.submitted == []


async def test_every_operation_catches_up_first_within_its_timeout(
    service: SnapshotService, node: Node
) -> None:
    await call(service, "record", snap(1, data=1, timeout_ms=300))
    await call(service, "read", snap(1))
    assert 0.2 < node.catch_ups[0] <= 0.3
    assert 1.9 < node.catch_ups[1] <= 2.0
    node.lagging = True
    for operation, body in [("read", snap(1)), ("list", {}), ("delete", snap(1))]:
        with pytest.raises(Timeout):
            await call(service, operation, body)
    assert len(node.submitted) == 1


async def test_retention_keeps_the_last_n(service: SnapshotService) -> None:
    for version in range(6):
        await call(service, "record", snap(version, data=version, keep_last=3))
    listed = await call(service, "list", {"source_uuid": "src"})
    assert [s["version"] for s in listed["snapshots"]] == [3, 4, 5]


async def seed(service: SnapshotService) -> None:
    for source, stream, version in [
        ("a", "x", 2),
        ("a", "x", 256),
        ("a", "y", 1),
        ("ab", "x", 1),
        ("b", "x", 7),
    ]:
        body = {"source_uuid": source, "stream_uuid": stream, "version": version, "data": 1}
        await call(service, "record", body)


def keys(page: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(s["source_uuid"], s["stream_uuid"], s["version"]) for s in page["snapshots"]]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, [("a", "x", 2), ("a", "x", 256), ("a", "y", 1), ("ab", "x", 1), ("b", "x", 7)]),
        ({"source_uuid": "a"}, [("a", "x", 2), ("a", "x", 256), ("a", "y", 1)]),
        ({"source_uuid": "a", "stream_uuid": "x"}, [("a", "x", 2), ("a", "x", 256)]),
        ({"stream_uuid": "x"}, [("a", "x", 2), ("a", "x", 256), ("ab", "x", 1), ("b", "x", 7)]),
        ({"source_uuid": "c"}, []),
    ],
)
async def test_list_filters_by_source_and_or_stream(
    service: SnapshotService, filters: dict[str, str], expected: list[tuple[str, str, int]]
) -> None:
    await seed(service)
    page = await call(service, "list", filters)
    assert keys(page) == expected
    assert page["next"] is None
    assert all(
        s["size"] == 1 and s["content_type"] == "application/json" for s in page["snapshots"]
    )


@pytest.mark.parametrize("filters", [{}, {"stream_uuid": "x"}, {"source_uuid": "a"}])
@pytest.mark.parametrize("codec", list(Codec))
async def test_list_pages_with_after_and_next(
    service: SnapshotService, filters: dict[str, str], codec: Codec
) -> None:
    await seed(service)
    everything = keys(await call(service, "list", filters))
    paged: list[tuple[str, str, int]] = []
    after = None
    while True:
        page = await call(service, "list", {**filters, "limit": 2, "after": after}, codec)
        assert len(page["snapshots"]) <= 2
        paged += keys(page)
        if page["next"] is None:
            break
        after = page["next"]
        assert (after["source_uuid"], after["stream_uuid"], after["version"]) == paged[-1]
    assert paged == everything


INVALID: list[tuple[str, dict[str, Any], type[EsdbError], str]] = [
    ("record", snap(1, data=1, source_uuid=""), InvalidRequest, "source_uuid"),
    ("record", snap(1, data=1, stream_uuid="x" * 201), InvalidRequest, "stream_uuid"),
    ("record", snap(1, data=1, stream_uuid="a\x00b"), InvalidRequest, "stream_uuid"),
    ("record", snap(-1, data=1), InvalidRequest, "version"),
    ("record", snap(1 << 63, data=1), InvalidRequest, "version"),
    ("record", snap(1), InvalidRequest, "data"),
    ("record", snap(1, data=1, content_type=""), InvalidRequest, "content_type"),
    ("record", snap(1, data="not base64!", content_type="x/y"), InvalidRequest, "data"),
    ("record", snap(1, data=1, keep_last=0), InvalidRequest, "keep_last"),
    ("record", snap(1, data=1, timeout_ms=0), InvalidRequest, "timeout_ms"),
    ("record", snap(1, data="x" * MAX_BYTES), TooLarge, "data"),
    ("read", snap(-3), InvalidRequest, "version"),
    ("read", snap("newest"), InvalidRequest, "version"),
    ("read", {"stream_uuid": "s"}, InvalidRequest, "source_uuid"),
    ("delete", snap("latest"), InvalidRequest, "version"),
    ("delete", snap(1, source_uuid="\x7f"), InvalidRequest, "source_uuid"),
    ("list", {"limit": 0}, InvalidRequest, "limit"),
    ("list", {"limit": 1001}, InvalidRequest, "limit"),
    ("list", {"stream_uuid": ""}, InvalidRequest, "stream_uuid"),
    ("list", {"after": {"source_uuid": "a", "stream_uuid": "x"}}, InvalidRequest, "after.version"),
    ("list", {"after": snap(1, source_uuid="")}, InvalidRequest, "after.source_uuid"),
]


@pytest.mark.parametrize(("operation", "body", "error", "field"), INVALID)
async def test_bad_requests_name_their_field(
    service: SnapshotService,
    node: Node,
    operation: str,
    body: dict[str, Any],
    error: type[EsdbError],
    field: str,
) -> None:
    with pytest.raises(error) as caught:
        await call(service, operation, body)
    assert caught.value.details["field"] == field
    assert node.submitted == []


async def test_msgpack_json_content_must_be_json(service: SnapshotService) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await call(service, "record", snap(1, data=b"{oops", metadata=b"{}"), Codec.MSGPACK)
    assert caught.value.details["field"] == "data"
    with pytest.raises(InvalidRequest) as caught:
        await call(service, "record", snap(1, data=b"1", metadata=b"nope"), Codec.MSGPACK)
    assert caught.value.details["field"] == "metadata"


async def test_the_size_limit_counts_data_and_metadata(service: SnapshotService) -> None:
    half = "x" * (MAX_BYTES // 2 - 2)  # a JSON string: two quotes more
    await call(service, "record", snap(1, data=half, metadata=half))
    with pytest.raises(TooLarge) as caught:
        await call(service, "record", snap(2, data=half, metadata=half + "x"))
    assert caught.value.details == {"field": "data", "limit": MAX_BYTES}
