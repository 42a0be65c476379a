"""The projection service's core in memory: runners only beside the writer leader, exactly
once across a leadership change, a definition change taking effect, and a fault beside a
healthy projection. The writer is `plan_and_apply` on a memory catalog; the V8 runtime is
real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from esdb.contracts.commands import StreamAppend, WriteRequest
from esdb.contracts.errors import error_from_body
from esdb.contracts.log import (
    PROJECTION_CREATE,
    PROJECTION_DISABLE,
    LogEntry,
    ProjectionCommitOp,
    ProjectionDefineOp,
)
from esdb.contracts.projections import stored_partition_decoder, stored_projection_decoder
from esdb.services.projection.runner import Limits
from esdb.services.projection.service import ProjectionService
from esdb.services.writer.apply import apply_entry
from esdb.shared.cluster_view import MemoryClusterView
from esdb.shared.storage import item_keys
from esdb.shared.storage.catalog import Catalog, memory_catalog
from tests.builders import append, create_store, plan_and_apply, write
from tests.waiting import eventually, idle

STORE = "default"
COUNT = "fromAll().when({$init: () => 0, $any: (s) => s + 1})"


class Writer:
    """Commits as the leader does them: planned against the catalog, then applied."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.commits = 0

    async def commit(self, store: str, appends: list[StreamAppend], op: ProjectionCommitOp) -> None:
        outcomes, _ = plan_and_apply(self.catalog, WriteRequest(store, appends, projection=op))
        if outcomes[0].error is not None:
            raise error_from_body(outcomes[0].error)
        self.commits += 1


def define(catalog: Catalog, name: str, query: str, action: str = PROJECTION_CREATE) -> None:
    op = ProjectionDefineOp(STORE, name, action, query=query)
    apply_entry(catalog, catalog.applied_sequence() + 1, LogEntry(ops=[op]))


def state(catalog: Catalog, name: str) -> object:
    raw = catalog.get(STORE).get_item(item_keys.PROJECTIONS, item_keys.partition_key(name, ""))
    return None if raw is None else int(stored_partition_decoder.decode(raw).state)


def checkpoint(catalog: Catalog, name: str) -> int:
    raw = catalog.get(STORE).get_item(item_keys.PROJECTIONS, item_keys.projection_key(name))
    assert raw is not None
    return stored_projection_decoder.decode(raw).checkpoint


@pytest.fixture
def catalog() -> Catalog:
    catalog = memory_catalog()
    create_store(catalog)
    return catalog


@pytest.fixture
def view() -> MemoryClusterView:
    return MemoryClusterView("node1")


@pytest.fixture
async def service(catalog: Catalog, view: MemoryClusterView) -> AsyncIterator[ProjectionService]:
    service = ProjectionService(
        view,
        store_names=catalog.names,
        stores=catalog.get,
        commit=Writer(catalog).commit,
        limits=Limits(idle_poll_s=0.005, live_commit_interval_s=0.0, skipped_commit_interval_s=0),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(service.run(stop))
    yield service
    stop.set()
    await asyncio.wait_for(running, 10)


def last_position(catalog: Catalog) -> int:
    return catalog.get(STORE).last_position()


async def test_projections_run_only_beside_the_leader_and_count_once_across_a_change(
    catalog: Catalog, view: MemoryClusterView, service: ProjectionService
) -> None:
    define(catalog, "count", COUNT)
    plan_and_apply(catalog, write(append("order-1", events=5)))
    view.lead("node2")
    await idle()
    assert service.running == [] and state(catalog, "count") is None
    view.lead()
    await eventually(lambda: state(catalog, "count") == 5, what="five counted", timeout=10)
    assert service.running == [(STORE, "count")]
    view.lead("node2")  # another node's writer leads: this node's runners stop
    await eventually(lambda: service.running == [], what="the runners to stop")
    plan_and_apply(catalog, write(append("order-2", events=3)))
    await idle()
    assert state(catalog, "count") == 5
    view.lead()  # back: from the checkpoint, nothing counted twice
    await eventually(lambda: state(catalog, "count") == 8, what="eight counted", timeout=10)
    await eventually(
        lambda: checkpoint(catalog, "count") == last_position(catalog), what="checkpointed"
    )
    assert state(catalog, "count") == 8


async def test_a_fault_stops_one_projection_and_a_disable_stops_its_runner(
    catalog: Catalog, view: MemoryClusterView, service: ProjectionService
) -> None:
    define(catalog, "count", COUNT)
    define(catalog, "broken", "fromAll().when({$any: () => { throw new Error('nope'); }})")
    plan_and_apply(catalog, write(append("order-1", events=2)))
    view.lead()
    await eventually(lambda: state(catalog, "count") == 2, what="two counted", timeout=10)
    await eventually(lambda: service.running == [(STORE, "count")], what="broken stopped")
    raw = catalog.get(STORE).get_item(item_keys.PROJECTIONS, item_keys.projection_key("broken"))
    assert raw is not None
    broken = stored_projection_decoder.decode(raw)
    assert "nope" in broken.reason and broken.fault_position == 1
    define(catalog, "count", "", PROJECTION_DISABLE)
    await eventually(lambda: service.running == [], what="the disabled runner to stop")
    plan_and_apply(catalog, write(append("order-1", events=1)))
    await idle()
    assert state(catalog, "count") == 2
