"""A projection restore through apply, in memory: it stores the record and every partition as
given, in the next epoch; a store that has the projection already keeps it; a commit then
goes on from the restored checkpoint."""

from __future__ import annotations

from esdb.contracts.log import (
    PROJECTION_CREATE,
    PartitionWrite,
    ProjectionCommitOp,
    ProjectionDefineOp,
    ProjectionRestoreOp,
)
from esdb.contracts.projections import ProjectionPartition
from esdb.contracts.restore import ProjectionRestoreRequest
from esdb.services.projection.restoring import restore_op
from esdb.shared.storage.catalog import memory_catalog
from tests.builders import create_store
from tests.unit.test_projection_commits import STORE, apply, partition, stored


def _restore(checkpoint: int = 7) -> ProjectionRestoreOp:
    request = ProjectionRestoreRequest(
        store=STORE,
        name="p",
        query="fromAll()",
        enabled=False,
        epoch=2,
        checkpoint=checkpoint,
        events_processed=5,
        events_emitted=3,
        reason="boom",
        fault_position=8,
        partitions=[
            ProjectionPartition(partition="a", state={"n": 1}, result={"n": 1}),
            ProjectionPartition(partition="b", state=None, result=None),
        ],
    )
    return restore_op(STORE, request, last_position=10)


def test_a_restore_stores_the_record_and_partitions_in_the_next_epoch() -> None:
    catalog = memory_catalog()
    create_store(catalog)

    apply(catalog, _restore())

    record = stored(catalog)
    assert record is not None
    assert (record.epoch, record.revision, record.checkpoint) == (3, 0, 7)
    assert (record.processed, record.emitted, record.partitions) == (5, 3, 2)
    assert (record.enabled, record.reason, record.fault_position) == (False, "boom", 8)
    assert (partition(catalog, "a"), partition(catalog, "b")) == (b'{"n":1}', b"")


def test_a_projection_already_there_stands_and_commits_go_on_from_a_restore() -> None:
    catalog = memory_catalog()
    create_store(catalog)
    apply(catalog, ProjectionDefineOp(STORE, "p", PROJECTION_CREATE, query="fromAll()"))
    before = stored(catalog)

    apply(catalog, _restore())

    assert stored(catalog) == before and partition(catalog, "a") is None
    other = memory_catalog()
    create_store(other)
    apply(other, _restore(), _restore(checkpoint=9))
    apply(
        other,
        ProjectionCommitOp(STORE, "p", 3, 7, 9, 2, 0, [PartitionWrite("c", b"2", b"2")]),
    )
    record = stored(other)
    assert record is not None
    assert (record.checkpoint, record.processed, record.partitions) == (9, 7, 3)
