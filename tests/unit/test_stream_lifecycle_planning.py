"""Stream lifecycle writes in the planner and apply: metadata, soft delete, tombstone, and how
they combine with appends of the same batch."""

from __future__ import annotations

from esdb.contracts.commands import (
    EXPECT_NO_STREAM,
    EXPECT_STREAM_EXISTS,
    LIFECYCLE_DELETE,
    LIFECYCLE_METADATA,
    LIFECYCLE_TOMBSTONE,
    StreamLifecycle,
    WriteRequest,
)
from esdb.contracts.errors import ErrorCode
from esdb.shared.storage.catalog import Catalog
from esdb.shared.storage.records import STREAM_ACTIVE, STREAM_DELETED, STREAM_TOMBSTONED
from tests.builders import DEFAULT_STORE, append, plan_and_apply, write


def change(stream: str, action: str, expected: int = -2, **metadata: object) -> WriteRequest:
    lifecycle = StreamLifecycle(stream, expected, action, dict(metadata))
    return WriteRequest(DEFAULT_STORE, [], lifecycle=lifecycle)


def state_of(catalog: Catalog, stream: str) -> tuple[int, str, dict[str, object]]:
    found = catalog.get(DEFAULT_STORE).stream_state(stream)
    assert found is not None
    return found.version, found.state, found.metadata


def test_metadata_is_replaced_and_the_version_kept(catalog: Catalog) -> None:
    plan_and_apply(catalog, write(append("s-1", events=3)))
    outcomes, _ = plan_and_apply(catalog, change("s-1", LIFECYCLE_METADATA, 2, max_count=1))

    assert outcomes[0].results is not None and outcomes[0].results[0].last_version == 2
    assert state_of(catalog, "s-1") == (2, STREAM_ACTIVE, {"max_count": 1})


def test_a_tombstone_stops_appends_in_the_same_batch(catalog: Catalog) -> None:
    plan_and_apply(catalog, write(append("s-1")))
    outcomes, _ = plan_and_apply(catalog, change("s-1", LIFECYCLE_TOMBSTONE), write(append("s-1")))

    assert outcomes[0].error is None
    assert outcomes[1].error is not None and outcomes[1].error.code == ErrorCode.STREAM_DELETED
    assert state_of(catalog, "s-1")[:2] == (0, STREAM_TOMBSTONED)


def test_a_deleted_stream_counts_as_absent_and_numbering_continues(catalog: Catalog) -> None:
    plan_and_apply(catalog, write(append("s-1", events=2)))
    outcomes, _ = plan_and_apply(
        catalog,
        change("s-1", LIFECYCLE_DELETE),
        write(append("s-1", EXPECT_STREAM_EXISTS)),
        write(append("s-1", EXPECT_NO_STREAM)),
    )

    assert outcomes[1].error is not None
    assert outcomes[1].error.code == ErrorCode.WRONG_EXPECTED_VERSION
    assert outcomes[2].results is not None and outcomes[2].results[0].first_version == 2
    assert state_of(catalog, "s-1") == (2, STREAM_ACTIVE, {"truncate_before": 2})


def test_deleting_twice_keeps_the_first_truncation(catalog: Catalog) -> None:
    plan_and_apply(catalog, write(append("s-1", events=2)))
    plan_and_apply(catalog, change("s-1", LIFECYCLE_DELETE))
    plan_and_apply(catalog, change("s-1", LIFECYCLE_DELETE))

    assert state_of(catalog, "s-1") == (1, STREAM_DELETED, {"truncate_before": 2})


def test_a_wrong_expected_version_changes_nothing(catalog: Catalog) -> None:
    plan_and_apply(catalog, write(append("s-1")))
    outcomes, entry = plan_and_apply(catalog, change("s-1", LIFECYCLE_DELETE, 5))

    assert entry is None
    assert outcomes[0].error is not None
    assert outcomes[0].error.details["actual_version"] == 0
    assert state_of(catalog, "s-1") == (0, STREAM_ACTIVE, {})
