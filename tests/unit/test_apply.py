"""Deterministic apply: entries land as planned, replay rebuilds the same state, and an entry
that does not fit stops the writer instead of being skipped."""

from __future__ import annotations

from typing import Any

import pytest

from esdb.contracts.commands import EXPECT_ANY, EXPECT_NO_STREAM
from esdb.contracts.log import (
    AppendOp,
    CheckpointOp,
    CreateStoreOp,
    LogEntry,
    RemoveStoreOp,
    StampedEvent,
)
from esdb.services.writer.apply import ApplyError, apply_entry
from esdb.shared.storage.catalog import Catalog, memory_catalog, read_checkpoint
from esdb.shared.storage.memory import MemoryStore
from esdb.shared.storage.records import EventRecord, StreamState
from tests.builders import NOW_US, append, create_store, new_event, plan_and_apply, write


def stamped(n: int = 1) -> list[StampedEvent]:
    return [
        StampedEvent(e.event_id, e.type, e.data, e.metadata, e.content_type, NOW_US)
        for e in (new_event() for _ in range(n))
    ]


def append_op(
    stream: str, first_version: int, first_position: int, events: int = 1, store: str = "default"
) -> AppendOp:
    return AppendOp(
        store=store,
        stream=stream,
        first_version=first_version,
        first_position=first_position,
        events=stamped(events),
    )


def state_of(catalog: Catalog) -> dict[str, Any]:
    """Everything a catalog holds, for comparing two of them."""
    stores = {}
    for name in catalog.names():
        store = catalog.get(name)
        stores[name] = (
            store.applied_sequence(),
            store.read_all(1, backward=False, limit=1 << 20),
            store.list_streams(None, 1 << 20),
        )
    return {"applied": catalog.applied_sequence(), "stores": stores}


def test_an_entry_lands_with_versions_positions_and_stamps(catalog: Catalog) -> None:
    events = [new_event("Created"), new_event("Paid")]

    outcomes, entry = plan_and_apply(
        catalog,
        write(append("order-1", EXPECT_NO_STREAM, events)),
        write(append("user-7", EXPECT_NO_STREAM, 1)),
        now_us=1234,
    )

    assert entry is not None
    assert all(o.error is None for o in outcomes)
    store = catalog.get("default")
    assert catalog.applied_sequence() == 2
    assert store.applied_sequence() == 2
    assert store.last_position() == 3
    assert store.read_stream("order-1", 0, backward=False, limit=10) == [
        EventRecord(
            event_id=e.event_id,
            stream="order-1",
            version=i,
            position=i + 1,
            type=e.type,
            data=e.data,
            metadata=e.metadata,
            content_type=e.content_type,
            created_us=1234,
        )
        for i, e in enumerate(events)
    ]
    assert store.stream_state("order-1") == StreamState(version=1)
    assert store.stream_state("user-7") == StreamState(version=0)
    assert store.event_position(events[1].event_id) == 2


def test_several_appends_to_one_stream_in_one_entry_apply_in_order(catalog: Catalog) -> None:
    entry = LogEntry(
        ops=[append_op("order-1", 0, 1, 2), append_op("user-7", 0, 3), append_op("order-1", 2, 4)]
    )

    apply_entry(catalog, 2, entry)

    store = catalog.get("default")
    page = store.read_stream("order-1", 0, backward=False, limit=10)
    assert [(r.version, r.position) for r in page] == [(0, 1), (1, 2), (2, 4)]
    assert store.stream_state("order-1") == StreamState(version=2)


def test_stream_state_keeps_its_lifecycle_and_metadata_across_appends(catalog: Catalog) -> None:
    store = catalog.get("default")
    with store.transaction(1) as txn:
        txn.put_stream_state("order-1", StreamState(version=-1, metadata={"max_count": 3}))

    apply_entry(catalog, 2, LogEntry(ops=[append_op("order-1", 0, 1, 2)]))

    assert store.stream_state("order-1") == StreamState(version=1, metadata={"max_count": 3})


def test_create_store_registers_it_once(catalog: Catalog) -> None:
    assert catalog.names() == ["default"]
    with pytest.raises(Exception, match="does not exist"):
        catalog.get("audit")

    apply_entry(
        catalog,
        2,
        LogEntry(ops=[CreateStoreOp("audit"), append_op("order-1", 0, 1, store="audit")]),
    )
    apply_entry(catalog, 3, LogEntry(ops=[CreateStoreOp("audit")]))

    assert catalog.names() == ["audit", "default"]
    assert catalog.applied_sequence() == 3
    assert catalog.get("audit").last_position() == 1  # creating it again kept its data
    assert catalog.get("default").last_position() == 0


def test_stores_number_their_positions_independently(catalog: Catalog) -> None:
    create_store(catalog, "audit")

    outcomes, _ = plan_and_apply(
        catalog,
        write(append("order-1", EXPECT_ANY, 2)),
        write(append("order-1", EXPECT_ANY, 1), store="audit"),
    )

    assert [o.results[0].first_position for o in outcomes if o.results] == [1, 1]
    assert catalog.get("default").last_position() == 2
    assert catalog.get("audit").last_position() == 1


# -- entries that do not fit ---------------------------------------------------------------


@pytest.mark.parametrize("sequence", [1, 3])
def test_an_entry_out_of_sequence_is_refused(catalog: Catalog, sequence: int) -> None:
    with pytest.raises(ApplyError):
        apply_entry(catalog, sequence, LogEntry(ops=[append_op("order-1", 0, 1)]))

    assert catalog.applied_sequence() == 1
    assert catalog.get("default").last_position() == 0


@pytest.mark.parametrize(
    "op",
    [
        # Each follows order-10's event at position 2, with order-1 at version 0.
        append_op("order-1", 2, 3),  # version gap
        append_op("order-1", 0, 3),  # version already taken
        append_op("user-7", 0, 4),  # position gap
        append_op("user-7", 0, 2),  # position already taken
    ],
    ids=["version-gap", "version-taken", "position-gap", "position-taken"],
)
def test_an_append_that_does_not_follow_the_state_is_refused(
    catalog: Catalog, op: AppendOp
) -> None:
    apply_entry(catalog, 2, LogEntry(ops=[append_op("order-1", 0, 1)]))
    store = catalog.get("default")
    before = state_of(catalog)

    with pytest.raises(ApplyError):
        apply_entry(catalog, 3, LogEntry(ops=[append_op("order-10", 0, 2), op]))

    assert state_of(catalog) == before
    assert store.stream_state("order-10") is None


# -- replay ----------------------------------------------------------------------------------


def test_replaying_the_log_into_a_fresh_catalog_rebuilds_the_same_state(catalog: Catalog) -> None:
    log = [LogEntry(ops=[CreateStoreOp("default")])]
    retried = write(append("order-1", EXPECT_NO_STREAM, 2))
    batches = [
        [retried, write(append("user-7", EXPECT_NO_STREAM, 1))],
        [retried, write(append("order-1", 1, 1), append("order-10", EXPECT_ANY, 3))],
        [write(append("order-1", EXPECT_NO_STREAM, 1))],  # fails: plans no entry
        [write(append("user-7", 0, 2)), write(append("nowhere"), store="nowhere")],
    ]
    for i, batch in enumerate(batches):
        _, entry = plan_and_apply(catalog, *batch, now_us=NOW_US + i)
        if entry is not None:
            log.append(entry)

    replica = memory_catalog()
    for sequence, entry in enumerate(log, start=1):
        apply_entry(replica, sequence, entry)

    assert catalog.applied_sequence() == len(log) == 4
    assert state_of(replica) == state_of(catalog)


class _CrashingSystemStore(MemoryStore):
    """A system store whose commit of one sequence fails once, like a crash between the
    commit of a store and that of the system store."""

    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.crash_at = crash_at

    def transaction(self, sequence: int) -> Any:
        if sequence == self.crash_at:
            self.crash_at = 0
            raise OSError("crashed")
        return super().transaction(sequence)


def test_applying_again_after_a_crash_between_stores_does_not_duplicate() -> None:
    catalog = Catalog(lambda name: MemoryStore(), _CrashingSystemStore(crash_at=2))
    create_store(catalog)
    entry = LogEntry(ops=[append_op("order-1", 0, 1, 2)])

    with pytest.raises(OSError, match="crashed"):
        apply_entry(catalog, 2, entry)
    store = catalog.get("default")
    assert (store.applied_sequence(), catalog.applied_sequence()) == (2, 1)

    apply_entry(catalog, 2, entry)

    assert catalog.applied_sequence() == 2
    assert store.last_position() == 2
    assert store.stream_state("order-1") == StreamState(version=1)


def test_a_removed_store_takes_its_checkpoints_and_a_namesake_starts_without_them(
    catalog: Catalog,
) -> None:
    apply_entry(catalog, 2, LogEntry(ops=[CreateStoreOp("audit"), CreateStoreOp("audit-2")]))
    apply_entry(
        catalog,
        3,
        LogEntry(
            ops=[
                append_op("order-1", 0, 1, events=5, store="audit"),
                CheckpointOp("audit", "$emitter", 5),
                CheckpointOp("audit", "sub-1", 3),
                CheckpointOp("audit-2", "$emitter", 7),
            ]
        ),
    )
    assert read_checkpoint(catalog.system, "audit", "sub-1") == 3

    apply_entry(
        catalog, 4, LogEntry(ops=[CheckpointOp("audit", "sub-1", 4), RemoveStoreOp("audit")])
    )
    apply_entry(catalog, 5, LogEntry(ops=[CreateStoreOp("audit")]))

    assert read_checkpoint(catalog.system, "audit", "$emitter") == 0
    assert read_checkpoint(catalog.system, "audit", "sub-1") == 0
    assert read_checkpoint(catalog.system, "audit-2", "$emitter") == 7  # a neighbour keeps its own
