"""The emitter's core without NATS: it fans out while this node's writer holds the lease (an
in-memory cluster view says who does), over an in-memory catalog whose checkpoints are logged
as the writer would apply them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from esdb.contracts.log import CheckpointOp, LogEntry, LogOp
from esdb.contracts.subjects import EMITTER_CHECKPOINT
from esdb.contracts.topics import POSITION_HEADER, event_subject
from esdb.services.emitter import fanout
from esdb.services.emitter.service import Emitter
from esdb.services.writer.apply import apply_entry
from esdb.shared.cluster_view import MemoryClusterView
from esdb.shared.storage.catalog import Catalog, read_checkpoint
from tests.builders import append, create_store, plan_and_apply, write
from tests.waiting import eventually, idle


class Node:
    """NATS as the emitter sees it (what was published and flushed), and a writer leader that
    applies every logged op to the node's catalog at once."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self.flushed = 0
        self.logged: list[LogOp] = []

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        self.published.append((subject, payload, headers))

    async def flush(self) -> None:
        self.flushed = len(self.published)

    async def log_ops(self, ops: list[LogOp]) -> None:
        self.logged.extend(ops)
        apply_entry(self.catalog, self.catalog.applied_sequence() + 1, LogEntry(ops=ops))

    def positions(self, store: str = "default") -> list[int]:
        prefix = event_subject(store, "x", "y").split(".")[:3]
        return [
            int(headers[POSITION_HEADER])
            for subject, _, headers in self.published
            if subject.split(".")[:3] == prefix
        ]

    def append(self, stream: str, events: int = 1, store: str = "default") -> int:
        plan_and_apply(self.catalog, write(append(stream, events=events), store=store))
        return self.catalog.applied_sequence()


@pytest.fixture
def node(catalog: Catalog) -> Node:
    return Node(catalog)


@pytest.fixture
def view() -> MemoryClusterView:
    return MemoryClusterView("node1")


@pytest.fixture(autouse=True)
def no_fallback_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the writer's notices wake a fan-out, so a test sees whether they do."""
    monkeypatch.setattr(fanout, "FALLBACK_POLL_S", 60.0)


@pytest.fixture
async def emitter(node: Node, view: MemoryClusterView) -> AsyncIterator[Emitter]:
    emitter = Emitter(
        view,
        node.catalog.get,
        lambda: contextlib.nullcontext(node.catalog.system),
        node.publish,
        node.flush,
        node.log_ops,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(emitter.run(stop))
    yield emitter
    stop.set()
    await asyncio.wait_for(running, 5)


async def test_a_follower_publishes_nothing_and_hears_no_notices(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    view.lead("node2")
    node.append("order-1", events=3)
    view.applied_to(node.catalog.applied_sequence())
    await idle()
    assert node.published == []
    assert view.hearing == 0
    assert emitter.stores == []


async def test_the_lease_holder_publishes_every_event_once_in_position_order(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    node.append("order-1", events=2)
    node.append("invoice-7")
    view.set_lease("node1")  # its writer need not serve yet: the emitter reads what is applied
    await eventually(lambda: len(node.published) == 3, what="three events published")
    assert node.positions() == [1, 2, 3]
    subjects = [subject for subject, _, _ in node.published]
    assert subjects == [
        event_subject("default", "order-1", "Happened"),
        event_subject("default", "order-1", "Happened"),
        event_subject("default", "invoice-7", "Happened"),
    ]
    assert view.hearing == 1


async def test_an_applied_notice_wakes_the_fanout(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    view.set_lease("node1")
    await eventually(lambda: emitter.stores == ["default"], what="the default store's fan-out")
    await idle()
    node.append("order-1")
    await idle()
    assert node.published == [], "nothing is read before the writer says it applied"
    view.applied_to(node.append("order-2"))
    await eventually(lambda: node.positions() == [1, 2], what="both events after the notice")


async def test_losing_the_lease_checkpoints_and_the_next_leadership_resumes_after_it(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    node.append("order-1", events=2)
    view.set_lease("node1")
    await eventually(lambda: len(node.published) == 2, what="the first two events")
    view.set_lease("node2")
    await eventually(lambda: emitter.stores == [], what="the fan-out to stop")
    assert node.logged == [CheckpointOp("default", EMITTER_CHECKPOINT, 2)]
    assert node.flushed == 2, "a checkpoint never covers what NATS has not taken"
    assert read_checkpoint(node.catalog.system, "default", EMITTER_CHECKPOINT) == 2
    assert view.hearing == 0

    node.append("order-3")
    view.set_lease("node1", run="run2")
    await eventually(lambda: len(node.published) == 3, what="the event after the checkpoint")
    assert node.positions() == [1, 2, 3]


async def test_a_store_created_while_leading_gets_a_fanout_of_its_own(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    view.set_lease("node1")
    await eventually(lambda: emitter.stores == ["default"], what="the default store's fan-out")
    create_store(node.catalog, "other")
    node.append("order-1", store="other")
    await eventually(lambda: emitter.stores == ["default", "other"], what="a fan-out of other")
    await eventually(lambda: node.positions("other") == [1], what="other's event published")
