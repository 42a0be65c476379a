"""The gateway's core without NATS: routing, validation, coalesced writes planned and applied
by an in-memory writer, forwarded requests, cluster status, and what a change of leader (on
the cluster view's memory twin) does to writes in flight."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from esdb.contracts.api import NodeStatus
from esdb.contracts.commands import StreamQuery, WriteBatch, WriteBatchReply, WriteOutcome
from esdb.contracts.errors import InvalidRequest, TooLarge, Unavailable
from esdb.contracts.subjects import (
    SNAPSHOTS_SERVICE,
    SYSTEM_STORE,
    WRITER_COMMANDS,
    Op,
    reader_subject,
    service_subject,
)
from esdb.services.gateway.coalescer import WriteCoalescer
from esdb.services.gateway.orphans import OrphanWatch
from esdb.services.gateway.ports import Unheard
from esdb.services.gateway.service import GatewayService, is_write
from esdb.shared.cluster_view import MemoryClusterView
from esdb.shared.membership import Member
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import Catalog
from esdb.shared.wire import Codec, encode
from tests.builders import DEFAULT_STORE, plan_and_apply
from tests.waiting import eventually, idle

_batch = msgspec.msgpack.Decoder(WriteBatch)
_query = msgspec.msgpack.Decoder(StreamQuery)
_reply = msgspec.msgpack.Encoder()


class Cluster:
    """The rest of the system as the gateway's ports see it: a writer leader that plans and
    applies each batch on an in-memory catalog (or never answers), services that answer
    with canned replies, and every message the gateway published."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.asked: list[tuple[str, bytes, dict[str, str] | None]] = []
        self.replies: dict[str, bytes] = {}
        self.batches: list[WriteBatch] = []
        self.writer_answers = True
        self.published: list[tuple[str, bytes]] = []

    async def ask(
        self, subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None
    ) -> bytes:
        self.asked.append((subject, payload, headers))
        if subject == WRITER_COMMANDS:
            batch = _batch.decode(payload)
            self.batches.append(batch)
            if not self.writer_answers:
                await asyncio.Event().wait()  # killed with the batch in hand
            outcomes, _ = plan_and_apply(self.catalog, *batch.requests)
            return _reply.encode(WriteBatchReply(outcomes))
        if subject in self.replies:
            return self.replies[subject]
        raise Unheard(subject)

    async def publish(self, subject: str, payload: bytes) -> None:
        self.published.append((subject, payload))


class Written:
    """The outcomes the gateway handed back for submitted writes."""

    def __init__(self) -> None:
        self.outcomes: list[WriteOutcome] = []

    async def __call__(self, outcome: WriteOutcome) -> None:
        self.outcomes.append(outcome)

    def codes(self) -> list[str | None]:
        return [o.error.code if o.error else None for o in self.outcomes]


SETTINGS = Settings(timeout_ms=2_000, max_request_bytes=4_096)


@pytest.fixture
def cluster(catalog: Catalog) -> Cluster:
    return Cluster(catalog)


@pytest.fixture
def view() -> MemoryClusterView:
    return MemoryClusterView(None)  # a gateway belongs to no node


@pytest.fixture
def orphans(cluster: Cluster) -> OrphanWatch:
    return OrphanWatch(cluster.publish, SETTINGS)


@pytest.fixture
async def gateway(
    cluster: Cluster, view: MemoryClusterView, orphans: OrphanWatch
) -> AsyncIterator[GatewayService]:
    core = GatewayService(SETTINGS, view, cluster.ask, WriteCoalescer(cluster.ask), orphans, {})
    following = asyncio.create_task(core.follow_leader())
    yield core
    following.cancel()


def body(**fields: Any) -> bytes:
    return encode(fields, Codec.JSON)


def submit_append(gateway: GatewayService, written: Written, stream: str, **extra: Any) -> None:
    data = body(stream=stream, expected_version="any", events=[{"type": "T", "data": {}}], **extra)
    gateway.submit_write(DEFAULT_STORE, Op.APPEND, data, Codec.JSON, written)


def test_writes_are_told_apart_from_everything_else() -> None:
    assert is_write(DEFAULT_STORE, Op.APPEND) and is_write(DEFAULT_STORE, Op.DELETE_STREAM)
    assert not is_write(DEFAULT_STORE, Op.READ_STREAM)
    assert not is_write(SYSTEM_STORE, Op.APPEND), "the system store takes no writes"


async def test_a_read_goes_to_a_reader_as_a_typed_query_and_its_reply_passes_untouched(
    gateway: GatewayService, cluster: Cluster
) -> None:
    cluster.replies[reader_subject(Op.READ_STREAM)] = b"already encoded by the reader"
    data = msgspec.msgpack.encode({"stream": "order-1", "direction": "backward", "limit": 5})
    reply = await gateway.answer(DEFAULT_STORE, Op.READ_STREAM, data, Codec.MSGPACK)
    assert reply == b"already encoded by the reader"
    [(subject, payload, _)] = cluster.asked
    assert subject == reader_subject(Op.READ_STREAM)
    query = _query.decode(payload)
    assert (query.store, query.stream, query.backward, query.limit) == (
        DEFAULT_STORE,
        "order-1",
        True,
        5,
    )
    assert query.codec == Codec.MSGPACK.value, "the reader answers in the client's codec"


async def test_no_reader_is_unavailable_and_the_request_undelivered(
    gateway: GatewayService,
) -> None:
    with pytest.raises(Unavailable) as caught:
        await gateway.answer(DEFAULT_STORE, Op.READ_ALL, body(), Codec.JSON)
    assert caught.value.details == {"delivered": False}


async def test_unknown_operations_and_oversized_requests_name_their_field(
    gateway: GatewayService,
) -> None:
    with pytest.raises(InvalidRequest) as unknown:
        await gateway.answer(DEFAULT_STORE, "frobnicate", body(), Codec.JSON)
    assert unknown.value.details == {"field": "operation"}
    with pytest.raises(InvalidRequest) as unknown_system:
        await gateway.answer(SYSTEM_STORE, "frobnicate", body(), Codec.JSON)
    assert unknown_system.value.details == {"field": "operation"}
    with pytest.raises(TooLarge) as large:
        await gateway.answer(DEFAULT_STORE, Op.READ_ALL, b"x" * 5_000, Codec.JSON)
    assert large.value.details["field"] == "body"
    with pytest.raises(InvalidRequest) as bad_store:
        await gateway.answer("Bad Store!", Op.READ_ALL, body(), Codec.JSON)
    assert bad_store.value.details["field"] == "store"


async def test_a_forwarded_request_reaches_its_service_as_it_came(
    gateway: GatewayService, cluster: Cluster
) -> None:
    subject = service_subject(SNAPSHOTS_SERVICE, DEFAULT_STORE, Op.SNAPSHOT_LIST)
    cluster.replies[subject] = b"the service's reply"
    data = msgspec.msgpack.encode({"source_uuid": "s"})
    reply = await gateway.answer(DEFAULT_STORE, Op.SNAPSHOT_LIST, data, Codec.MSGPACK)
    assert reply == b"the service's reply"
    [(asked, payload, headers)] = cluster.asked
    assert (asked, payload) == (subject, data)
    assert headers == {"Content-Type": "application/msgpack"}


async def test_a_forwarded_request_nobody_serves_may_be_sent_again(
    gateway: GatewayService,
) -> None:
    with pytest.raises(Unavailable) as caught:
        await gateway.answer(DEFAULT_STORE, Op.SUBSCRIPTION_LIST, body(), Codec.JSON)
    assert "subscriptions service" in caught.value.message
    assert caught.value.details == {"delivered": False}


async def test_writes_are_validated_and_coalesced_for_the_leader(
    gateway: GatewayService, cluster: Cluster
) -> None:
    written = Written()
    for n in range(5):
        submit_append(gateway, written, f"order-{n}")
    await eventually(lambda: len(written.outcomes) == 5, what="five outcomes")
    assert written.codes() == [None] * 5
    assert sum(len(batch.requests) for batch in cluster.batches) == 5
    assert len(cluster.batches) < 5, "writes waiting together travel together"
    assert cluster.catalog.get(DEFAULT_STORE).last_position() == 5


async def test_an_invalid_write_is_refused_before_it_is_queued(
    gateway: GatewayService, cluster: Cluster
) -> None:
    data = body(stream="order-1", expected_version="sometime", events=[{"type": "T"}])
    with pytest.raises(InvalidRequest) as caught:
        gateway.submit_write(DEFAULT_STORE, Op.APPEND, data, Codec.JSON, Written())
    assert caught.value.details == {"field": "expected_version"}
    await idle()
    assert cluster.batches == []


async def test_a_new_lease_answers_the_batches_sent_before_with_timeout(
    gateway: GatewayService, cluster: Cluster, view: MemoryClusterView
) -> None:
    view.lead("node1")
    await idle()
    cluster.writer_answers = False
    written = Written()
    submit_append(gateway, written, "order-1")
    await eventually(lambda: len(cluster.batches) == 1, what="the batch to leave")
    view.set_lease(None)  # released or expired: nobody to say the batch is lost yet
    await idle()
    assert written.outcomes == []
    view.set_lease("node1", run="run2")  # its writer restarted: the batch died with it
    await eventually(lambda: len(written.outcomes) == 1, what="the batch to be answered")
    assert written.codes() == ["timeout"]


async def test_a_leader_announcement_answers_writes_an_earlier_leader_took(
    gateway: GatewayService, cluster: Cluster, view: MemoryClusterView, orphans: OrphanWatch
) -> None:
    orphans.remember("_INBOX.lost", body(stream="order-1"), Codec.JSON)
    orphans.remember("_INBOX.short", body(stream="order-2", timeout_ms=1), Codec.JSON)
    remembered = time.monotonic()
    view.set_lease("node2")
    await idle()
    assert cluster.published == [], "taking the lease is not serving yet"
    await eventually(
        lambda: time.monotonic() > remembered + 0.002, what="the 1 ms write's deadline"
    )
    view.announce("node2")
    await eventually(lambda: len(cluster.published) == 1, what="the lost write answered")
    [(reply, payload)] = cluster.published
    assert reply == "_INBOX.lost"
    assert json.loads(payload)["error"]["code"] == "timeout"
    assert orphans.waiting == 0


def node(name: str, role: str = "follower", **fields: Any) -> NodeStatus:
    return NodeStatus(
        node_id=name,
        role=role,
        applied_sequence=5,
        log_last_sequence=5,
        lag=0,
        stores=[DEFAULT_STORE],
        **fields,
    )


async def test_cluster_status_names_the_leader_the_log_the_members_and_any_disagreement(
    gateway: GatewayService, view: MemoryClusterView
) -> None:
    view.log_end = 5
    view.statuses = [node("node2", lease_holder="node1"), node("node1", "leader")]
    view.registered = [Member(node_id=n, host=f"10.0.0.{n[-1]}") for n in ("node1", "node3")]
    status = msgspec.json.decode(
        await gateway.answer(SYSTEM_STORE, Op.CLUSTER_STATUS, b"", Codec.JSON)
    )
    assert status["leader"] == "node1"
    assert [n["node_id"] for n in status["nodes"]] == ["node1", "node2"]
    assert status["log"]["last_sequence"] == 5
    assert not status["consistent"]
    assert status["problems"] == ["nodes disagree on the lease holder: node1→None, node2→node1"]
    assert [(m["node_id"], m["host"], m["answered"]) for m in status["members"]] == [
        ("node1", "10.0.0.1", True),
        ("node3", "10.0.0.3", False),
    ]


async def test_health_and_readiness_need_a_leader_and_a_reader(
    gateway: GatewayService, cluster: Cluster, view: MemoryClusterView
) -> None:
    health = await gateway.health()
    assert (health.status, health.leader, health.readers) == ("unavailable", None, 0)
    assert await gateway.not_ready() == "no reader is available"  # the writer answers pings

    view.statuses = [node("node1", "leader")]
    cluster.replies[reader_subject("ping")] = b""
    health = await gateway.health()
    assert (health.status, health.leader, health.readers) == ("ok", "node1", 1)
    assert await gateway.not_ready() is None


async def test_store_administration_is_written_through_the_leader(
    gateway: GatewayService, cluster: Cluster
) -> None:
    reply = await gateway.answer(SYSTEM_STORE, Op.STORE_CREATE, body(store="orders"), Codec.JSON)
    assert json.loads(reply)["store"] == "orders"
    assert cluster.catalog.exists("orders")
    with pytest.raises(InvalidRequest) as caught:
        await gateway.answer(SYSTEM_STORE, Op.STORE_REMOVE, body(store="default"), Codec.JSON)
    assert caught.value.details == {"field": "store"}
