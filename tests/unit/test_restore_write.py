"""The admin's restore write: a stream may start above version 0, end deleted or tombstoned at
a given version, keep its metadata and its events' `created`; it lands only at the expected
store position, a re-run answers as the first time, and apply refuses an op that does not fit."""

from __future__ import annotations

import pytest

from esdb.contracts.commands import EXPECT_NO_STREAM, RestoredStream, StoreRestore, WriteRequest
from esdb.contracts.errors import ErrorCode
from esdb.contracts.log import LogEntry, RestoreStreamOp, SnapshotOp, StampedEvent
from esdb.contracts.restore import NO_FENCE
from esdb.services.writer.apply import ApplyError, apply_entry
from esdb.services.writer.restore_planning import restore_bytes, restore_events
from esdb.shared.storage.catalog import Catalog
from esdb.shared.storage.records import (
    STREAM_ACTIVE,
    STREAM_DELETED,
    STREAM_TOMBSTONED,
    StreamState,
)
from esdb.shared.storage.visibility import MAX_COUNT, TRUNCATE_BEFORE
from tests.builders import append, new_event, plan_and_apply, write

CREATED_US = 1_700_000_000_123_456


def events(count: int, created_us: int = CREATED_US) -> list[StampedEvent]:
    return [
        StampedEvent(e.event_id, e.type, e.data, e.metadata, e.content_type, created_us + n)
        for n, e in enumerate(new_event() for _ in range(count))
    ]


def restore(*streams: RestoredStream, expected_position: int = NO_FENCE) -> WriteRequest:
    return WriteRequest("default", [], restore=StoreRestore(expected_position, list(streams)))


def test_a_stream_starts_above_version_0_with_its_metadata_and_created_times(
    catalog: Catalog,
) -> None:
    batch = events(3)
    item = RestoredStream("order-1", -1, 20, batch, metadata={MAX_COUNT: 3})

    outcomes, _ = plan_and_apply(catalog, restore(item), now_us=99)

    assert outcomes[0].error is None and outcomes[0].results is not None
    result = outcomes[0].results[0]
    assert (result.first_version, result.last_version) == (20, 22)
    assert (result.first_position, result.last_position) == (1, 3)
    store = catalog.get("default")
    assert store.stream_state("order-1") == StreamState(22, STREAM_ACTIVE, {MAX_COUNT: 3})
    stored = store.read_stream("order-1", 0, backward=False, limit=10)
    assert [(r.version, r.position, r.created_us) for r in stored] == [
        (20, 1, CREATED_US),
        (21, 2, CREATED_US + 1),
        (22, 3, CREATED_US + 2),
    ]
    assert [r.event_id for r in stored] == [e.event_id for e in batch]


def test_deleted_and_tombstoned_streams_are_created_at_their_version(catalog: Catalog) -> None:
    deleted = RestoredStream(
        "gone-1", -1, 0, [], STREAM_DELETED, 24, {TRUNCATE_BEFORE: 25, "owner": "ops"}
    )
    tombstoned = RestoredStream("dead-1", -1, 0, [], STREAM_TOMBSTONED, 24, {})

    outcomes, _ = plan_and_apply(catalog, restore(deleted, tombstoned))

    assert outcomes[0].results is not None
    assert [r.last_version for r in outcomes[0].results] == [24, 24]
    store = catalog.get("default")
    assert store.stream_state("gone-1") == StreamState(
        24, STREAM_DELETED, {TRUNCATE_BEFORE: 25, "owner": "ops"}
    )
    assert store.stream_state("dead-1") == StreamState(24, STREAM_TOMBSTONED, {})
    assert store.last_position() == 0

    # A soft-deleted stream goes on from its version: a `no_stream` append lands at 25.
    outcomes, _ = plan_and_apply(catalog, write(append("gone-1", EXPECT_NO_STREAM, 1)))
    assert outcomes[0].results is not None and outcomes[0].results[0].first_version == 25
    outcomes, _ = plan_and_apply(catalog, write(append("dead-1", EXPECT_NO_STREAM, 1)))
    assert outcomes[0].error is not None and outcomes[0].error.code == "stream_deleted"


def test_a_stream_restored_in_pieces_continues_and_may_skip_hidden_versions(
    catalog: Catalog,
) -> None:
    plan_and_apply(catalog, restore(RestoredStream("order-1", -1, 5, events(2))))
    outcomes, _ = plan_and_apply(
        catalog,
        restore(
            RestoredStream("order-1", 6, 9, events(1)),
            RestoredStream("order-2", -1, 0, events(1)),
            RestoredStream("order-1", 9, 10, events(1)),  # runs of an interleaved export
            expected_position=2,
        ),
    )

    assert outcomes[0].error is None, outcomes[0].error
    store = catalog.get("default")
    stored = store.read_stream("order-1", 0, backward=False, limit=10)
    assert [(r.version, r.position) for r in stored] == [(5, 1), (6, 2), (9, 3), (10, 5)]
    assert store.stream_state("order-1") == StreamState(10, STREAM_ACTIVE, {})
    assert store.last_position() == 5


def test_nothing_lands_off_the_expected_position_or_version(catalog: Catalog) -> None:
    plan_and_apply(catalog, restore(RestoredStream("order-1", -1, 0, events(2))))

    fenced, entry = plan_and_apply(
        catalog, restore(RestoredStream("order-2", -1, 0, events(1)), expected_position=1)
    )
    assert entry is None and fenced[0].error is not None
    assert fenced[0].error.code == ErrorCode.WRONG_EXPECTED_VERSION
    assert fenced[0].error.details["field"] == "expected_position"
    assert fenced[0].error.details["actual_position"] == 2

    stale, entry = plan_and_apply(catalog, restore(RestoredStream("order-1", 0, 1, events(1))))
    assert entry is None and stale[0].error is not None
    assert stale[0].error.code == ErrorCode.WRONG_EXPECTED_VERSION
    assert stale[0].error.details["actual_version"] == 1
    assert catalog.get("default").last_position() == 2


def test_a_rerun_answers_as_the_first_time_and_a_partial_one_conflicts(catalog: Catalog) -> None:
    batch = events(2)
    item = RestoredStream("order-1", -1, 3, batch, metadata={"owner": "ops"})
    deleted = RestoredStream("gone-1", -1, 0, [], STREAM_DELETED, 7, {TRUNCATE_BEFORE: 8})
    first, _ = plan_and_apply(catalog, restore(item, deleted, expected_position=0))

    again, entry = plan_and_apply(catalog, restore(item, deleted, expected_position=0))

    assert entry is None
    assert again[0].results == first[0].results
    partial, entry = plan_and_apply(
        catalog,
        restore(RestoredStream("order-1", -1, 3, [batch[0], *events(1)])),
    )
    assert entry is None and partial[0].error is not None
    assert partial[0].error.code == ErrorCode.IDEMPOTENCY_CONFLICT
    assert catalog.get("default").last_position() == 2


def test_bad_shapes_are_refused_naming_the_field(catalog: Catalog) -> None:
    twice = events(1)
    cases = {
        "streams": restore(
            RestoredStream("order-1", -1, 0, twice), RestoredStream("order-2", -1, 0, twice)
        ),
        "streams[0].first_version": restore(RestoredStream("order-1", 3, 2, events(1))),
        "streams[0].version": restore(RestoredStream("order-1", -1, 4, events(2), version=4)),
        "streams[0].state": restore(RestoredStream("order-1", -1, 0, [], "gone", 3)),
    }
    for field, request in cases.items():
        outcomes, entry = plan_and_apply(catalog, request)
        assert entry is None and outcomes[0].error is not None, field
        assert outcomes[0].error.code == ErrorCode.INVALID_REQUEST
        assert outcomes[0].error.details["field"] == field


def test_snapshots_keep_their_created_time(catalog: Catalog) -> None:
    snapshot = SnapshotOp("elsewhere", "src", "order-1", 4, b"{}", b"", "application/json", 7)
    request = WriteRequest("default", [], restore=StoreRestore(NO_FENCE, [], [snapshot]))

    outcomes, entry = plan_and_apply(catalog, request)

    assert outcomes[0].error is None and entry is not None
    assert entry.ops == [
        SnapshotOp("default", "src", "order-1", 4, b"{}", b"", "application/json", 7)
    ]


def test_apply_stops_on_a_restore_that_does_not_fit(catalog: Catalog) -> None:
    plan_and_apply(catalog, restore(RestoredStream("order-1", -1, 0, events(3))))
    behind = RestoreStreamOp("default", "order-1", 1, 4, events(1), 1, STREAM_ACTIVE, {})

    with pytest.raises(ApplyError, match="does not follow"):
        apply_entry(catalog, catalog.applied_sequence() + 1, LogEntry([behind]))

    below = RestoreStreamOp("default", "order-1", 0, 0, [], 1, STREAM_DELETED, {})
    with pytest.raises(ApplyError, match="below"):
        apply_entry(catalog, catalog.applied_sequence() + 1, LogEntry([below]))


def test_the_sequencer_counts_a_restore_s_events_and_bytes() -> None:
    batch = events(3)
    request = restore(RestoredStream("order-1", -1, 0, batch), RestoredStream("order-2", -1, 0, []))

    assert restore_events(request) == 3
    assert request.restore is not None
    assert restore_bytes(request.restore) >= sum(len(e.data) + len(e.type) for e in batch)
    assert restore_events(WriteRequest("default", [])) == 0
