"""The scavenger's core without NATS: it serves only while its node's writer leads (an
in-memory cluster view says who does), and logs removals that the writer applies to an
in-memory catalog, never past the emitter's checkpoint."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from esdb.contracts.errors import Unavailable
from esdb.contracts.log import CheckpointOp, LogEntry, LogOp, ScavengeOp, StreamMetaOp
from esdb.contracts.subjects import EMITTER_CHECKPOINT, Op
from esdb.services.scavenger.service import Scavenger, ScavengerService
from esdb.services.writer.apply import apply_entry
from esdb.shared.cluster_view import MemoryClusterView
from esdb.shared.storage.catalog import Catalog
from tests.builders import DEFAULT_STORE, NOW_US, append, create_store, plan_and_apply, write
from tests.endpoints import MemoryEndpoint
from tests.waiting import eventually, idle


class Writer:
    """The writer leader: applies every logged op to the node's catalog at once, unless the
    test makes a store's ops fail."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.logged: list[LogOp] = []
        self.failing: set[str] = set()

    async def log_ops(self, ops: list[LogOp]) -> None:
        if any(op.store in self.failing for op in ops):
            raise Unavailable("no writer leader; retry")
        self.logged.extend(ops)
        self.apply(*ops)

    def apply(self, *ops: LogOp) -> None:
        apply_entry(self.catalog, self.catalog.applied_sequence() + 1, LogEntry(ops=list(ops)))

    def seed(self, store: str = DEFAULT_STORE, *, published: int = 1_000) -> None:
        """Two streams, one capped at 2 events (so 3 are hidden); the emitter published up
        to `published`."""
        plan_and_apply(self.catalog, write(append("keep-1", events=2), store=store))
        plan_and_apply(self.catalog, write(append("count-1", events=5), store=store))
        self.apply(
            StreamMetaOp(store, "count-1", "active", {"max_count": 2}),
            CheckpointOp(store, EMITTER_CHECKPOINT, published),
        )

    def versions(self, stream: str, store: str = DEFAULT_STORE) -> list[int]:
        records, _ = self.catalog.get(store).read_all(1, backward=False, limit=100)
        return [r.version for r in records if r.stream == stream]


@pytest.fixture
def writer(catalog: Catalog) -> Writer:
    return Writer(catalog)


@pytest.fixture
def view() -> MemoryClusterView:
    return MemoryClusterView("node1")


@pytest.fixture
def endpoint() -> MemoryEndpoint:
    return MemoryEndpoint()


def scavenger(writer: Writer) -> Scavenger:
    return Scavenger(
        writer.catalog.get,
        lambda: contextlib.nullcontext(writer.catalog.system),
        writer.log_ops,
        now_us=lambda: NOW_US,
    )


@contextlib.asynccontextmanager
async def running(service: ScavengerService) -> AsyncIterator[ScavengerService]:
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_it_serves_only_while_its_writer_leads(
    writer: Writer, view: MemoryClusterView, endpoint: MemoryEndpoint
) -> None:
    service = ScavengerService(view, scavenger(writer), endpoint, interval_s=0)
    async with running(service):
        view.set_lease("node1")
        await idle()
        assert not endpoint.is_open, "its writer holds the lease but may still be catching up"
        view.announce("node1")
        await eventually(lambda: endpoint.is_open, what="the scavenge endpoint to open")
        assert endpoint.routes is not None and set(endpoint.routes) == {Op.SCAVENGE}

        view.lead("node2")
        await eventually(lambda: not endpoint.is_open, what="the endpoint to close")
        assert not service.active
        view.lead("node1", run="run2")
        await eventually(lambda: endpoint.opened == 2, what="the endpoint to open again")
    assert not endpoint.is_open, "stopping closes it"


async def test_a_request_logs_each_removal_and_reports_what_went(
    writer: Writer, view: MemoryClusterView, endpoint: MemoryEndpoint
) -> None:
    writer.seed()
    async with running(ScavengerService(view, scavenger(writer), endpoint, interval_s=0)):
        view.lead()
        await eventually(lambda: endpoint.is_open, what="the scavenge endpoint to open")
        report = await endpoint.request(DEFAULT_STORE, Op.SCAVENGE, {})
    assert (report["store"], report["streams"], report["events"]) == (DEFAULT_STORE, 1, 3)
    assert report["bytes"] > 0
    assert [op for op in writer.logged if isinstance(op, ScavengeOp)] == [
        ScavengeOp(DEFAULT_STORE, "count-1", 3)
    ]
    assert writer.versions("count-1") == [3, 4]
    assert writer.versions("keep-1") == [0, 1]


async def test_nothing_the_emitter_has_not_published_is_removed(
    writer: Writer, view: MemoryClusterView, endpoint: MemoryEndpoint
) -> None:
    writer.seed(published=4)  # count-1 holds positions 3 to 7
    async with running(ScavengerService(view, scavenger(writer), endpoint, interval_s=0)):
        view.lead()
        await eventually(lambda: endpoint.is_open, what="the scavenge endpoint to open")
        report = await endpoint.request(DEFAULT_STORE, Op.SCAVENGE, {})
    assert report["events"] == 2
    assert writer.versions("count-1") == [2, 3, 4]


async def test_the_background_pass_goes_over_every_store_despite_one_failing(
    writer: Writer, view: MemoryClusterView, endpoint: MemoryEndpoint
) -> None:
    create_store(writer.catalog, "broken")
    create_store(writer.catalog, "other")
    for store in (DEFAULT_STORE, "broken", "other"):
        writer.seed(store)
    writer.failing.add("broken")
    service = ScavengerService(view, scavenger(writer), endpoint, interval_s=0.01)
    async with running(service):
        view.lead()
        await eventually(
            lambda: writer.versions("count-1", "other") == [3, 4], what="other scavenged"
        )
        view.lead("node2")
        await eventually(lambda: not service.active, what="the scavenger to stand down")
    assert writer.versions("count-1") == [3, 4]
    assert writer.versions("count-1", "broken") == [0, 1, 2, 3, 4]
