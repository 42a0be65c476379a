"""Projection ops through planning and apply, in memory: a commit and its emitted events land
together and only from where the projection stands, so a second runner's or a retried commit
never lands twice; definitions change the record the same way on every replica."""

from __future__ import annotations

import msgspec

from esdb.contracts.commands import EXPECT_ANY, NewEvent, StreamAppend, WriteRequest
from esdb.contracts.log import (
    PROJECTION_CREATE,
    PROJECTION_DELETE,
    PROJECTION_DISABLE,
    PROJECTION_RESET,
    PROJECTION_UPDATE,
    LogEntry,
    LogOp,
    PartitionWrite,
    ProjectionCommitOp,
    ProjectionDefineOp,
)
from esdb.contracts.projections import (
    StoredProjection,
    stored_partition_decoder,
    stored_projection_decoder,
)
from esdb.services.projection.batches import emitted_id
from esdb.services.writer.apply import apply_entry
from esdb.services.writer.planning import Planner
from esdb.shared.storage import item_keys
from esdb.shared.storage.catalog import Catalog, memory_catalog
from tests.builders import NOW_US, create_store, plan_and_apply

STORE = "default"


def apply(catalog: Catalog, *ops: LogOp) -> None:
    apply_entry(catalog, catalog.applied_sequence() + 1, LogEntry(ops=list(ops)))


def stored(catalog: Catalog, name: str = "p") -> StoredProjection | None:
    raw = catalog.get(STORE).get_item(item_keys.PROJECTIONS, item_keys.projection_key(name))
    return None if raw is None else stored_projection_decoder.decode(raw)


def partition(catalog: Catalog, key: str, name: str = "p") -> bytes | None:
    raw = catalog.get(STORE).get_item(item_keys.PROJECTIONS, item_keys.partition_key(name, key))
    return None if raw is None else stored_partition_decoder.decode(raw).state


def created() -> Catalog:
    catalog = memory_catalog()
    create_store(catalog)
    apply(catalog, ProjectionDefineOp(STORE, "p", PROJECTION_CREATE, query="fromAll()"))
    return catalog


def commit(
    start: int, end: int, *, epoch: int = 0, revision: int = 0, state: bytes = b"1"
) -> ProjectionCommitOp:
    return ProjectionCommitOp(
        store=STORE,
        name="p",
        epoch=epoch,
        revision=revision,
        from_checkpoint=start,
        checkpoint=end,
        processed=end - start,
        emitted=1,
        partitions=[PartitionWrite("", state, state)],
    )


def emitting(op: ProjectionCommitOp, stream: str = "derived") -> WriteRequest:
    event = NewEvent(
        emitted_id("p", op.epoch, op.checkpoint, 0), "Seen", b"{}", b"", "application/json"
    )
    return WriteRequest(STORE, [StreamAppend(stream, EXPECT_ANY, [event])], projection=op)


def test_a_commit_lands_with_its_emitted_events_in_one_entry() -> None:
    catalog = created()
    outcomes, entry = plan_and_apply(catalog, emitting(commit(0, 5)))
    assert outcomes[0].error is None and entry is not None
    assert [type(op).__name__ for op in entry.ops] == ["AppendOp", "ProjectionCommitOp"]
    record = stored(catalog)
    assert record is not None
    assert (record.checkpoint, record.processed, record.emitted, record.partitions) == (5, 5, 1, 1)
    assert partition(catalog, "") == b"1"
    assert catalog.get(STORE).stream_state("derived") is not None


def test_a_second_commit_from_the_same_checkpoint_is_refused_with_no_ops() -> None:
    catalog = created()
    plan_and_apply(catalog, emitting(commit(0, 5)))
    outcomes, entry = plan_and_apply(catalog, emitting(commit(0, 5, state=b"2")))
    assert entry is None
    assert outcomes[0].error is not None and outcomes[0].error.code == "wrong_expected_version"
    events, _ = catalog.get(STORE).read_all(1, backward=False, limit=10)
    assert len(events) == 1  # the emitted event once
    assert partition(catalog, "") == b"1"


def test_two_commits_from_one_checkpoint_in_one_batch_land_once() -> None:
    catalog = created()
    planner = Planner(catalog)
    plan = planner.plan_batch(
        [emitting(commit(0, 5)), emitting(commit(0, 5), stream="other")], now_us=NOW_US
    )
    assert plan.outcomes[0].error is None and plan.outcomes[1].error is not None
    apply(catalog, *plan.ops)
    # The overlay carries the first commit to the next entry planned before it is applied.
    later = planner.plan_batch([emitting(commit(5, 9))], now_us=NOW_US)
    assert later.outcomes[0].error is None


def test_apply_skips_a_commit_that_does_not_start_where_the_projection_stands() -> None:
    catalog = created()
    apply(catalog, commit(0, 5))
    apply(catalog, commit(0, 7, state=b"late"))  # logged past the planner's check (a race)
    record = stored(catalog)
    assert record is not None and record.checkpoint == 5
    assert partition(catalog, "") == b"1"


def test_reset_clears_states_and_starts_a_new_epoch() -> None:
    catalog = created()
    apply(catalog, commit(0, 5))
    apply(catalog, ProjectionDefineOp(STORE, "p", PROJECTION_RESET))
    record = stored(catalog)
    assert record is not None
    assert (record.epoch, record.checkpoint, record.processed, record.partitions) == (1, 0, 0, 0)
    assert partition(catalog, "") is None
    apply(catalog, commit(0, 3))  # the old epoch's late commit
    assert stored(catalog) == record
    apply(catalog, commit(0, 3, epoch=1, revision=1))
    after = stored(catalog)
    assert after is not None and after.checkpoint == 3


def test_update_disable_delete_and_fault_and_a_late_revision_is_refused() -> None:
    catalog = created()
    apply(catalog, ProjectionDefineOp(STORE, "p", PROJECTION_UPDATE, emit_enabled=True))
    record = stored(catalog)
    assert record is not None and record.emit_enabled and record.query == "fromAll()"
    assert record.revision == 1
    apply(catalog, ProjectionDefineOp(STORE, "p", PROJECTION_DISABLE))
    disabled = stored(catalog)
    assert disabled is not None and not disabled.enabled
    late = commit(0, 5)  # a runner of the first revision, still going
    apply(catalog, late)
    assert stored(catalog) == disabled
    outcomes, entry = plan_and_apply(catalog, emitting(late))
    assert entry is None and outcomes[0].error is not None
    fault = msgspec.structs.replace(
        commit(0, 0, revision=2), reason="boom", fault_position=4, partitions=[]
    )
    apply(catalog, fault)
    faulted = stored(catalog)
    assert faulted is not None and (faulted.reason, faulted.fault_position) == ("boom", 4)
    apply(catalog, commit(0, 2, revision=2), ProjectionDefineOp(STORE, "p", PROJECTION_DELETE))
    assert stored(catalog) is None and partition(catalog, "") is None


def test_emitted_ids_are_deterministic_per_epoch_position_and_index() -> None:
    first = emitted_id("p", 0, 10, 0)
    assert first == emitted_id("p", 0, 10, 0)
    others = {emitted_id("p", 1, 10, 0), emitted_id("p", 0, 11, 0), emitted_id("p", 0, 10, 1)}
    assert first not in others and len(others) == 3
    assert first[6] >> 4 == 8  # a UUID version 8
