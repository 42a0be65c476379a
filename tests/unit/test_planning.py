"""The leader's planning: expected versions, atomic requests, idempotent retries, stamping."""

from __future__ import annotations

import pytest

from esdb.contracts.api import AppendResult
from esdb.contracts.commands import (
    EXPECT_ANY,
    EXPECT_NO_STREAM,
    EXPECT_STREAM_EXISTS,
    NewEvent,
    StreamAppend,
    WriteOutcome,
    WriteRequest,
)
from esdb.contracts.errors import ErrorBody, ErrorCode
from esdb.contracts.log import AppendOp
from esdb.services.writer.planning import Plan, plan_batch
from esdb.shared.storage.catalog import Catalog
from esdb.shared.storage.records import STREAM_TOMBSTONED, StreamState
from tests.builders import NOW_US, append, new_event, plan_and_apply, write


def result(
    first_version: int, last_version: int, first_position: int, last_position: int
) -> AppendResult:
    return AppendResult(
        first_version=first_version,
        last_version=last_version,
        first_position=first_position,
        last_position=last_position,
    )


def succeeded(outcome: WriteOutcome) -> list[AppendResult]:
    assert outcome.error is None, outcome.error
    assert outcome.results is not None
    return outcome.results


def failed(outcome: WriteOutcome, code: ErrorCode) -> ErrorBody:
    assert outcome.results is None
    assert outcome.error is not None
    assert outcome.error.code == code.value, outcome.error
    return outcome.error


def appends_of(plan: Plan) -> list[AppendOp]:
    """The plan's ops, which are all appends."""
    assert all(isinstance(op, AppendOp) for op in plan.ops)
    return [op for op in plan.ops if isinstance(op, AppendOp)]


def given_stream(catalog: Catalog, stream: str, events: int) -> None:
    """Commit `events` events to `stream` through the writer's own path."""
    (outcome,), _ = plan_and_apply(catalog, write(append(stream, EXPECT_ANY, events)))
    succeeded(outcome)


# -- expected versions ------------------------------------------------------------------------


@pytest.mark.parametrize("expected", [EXPECT_ANY, EXPECT_NO_STREAM])
def test_a_new_stream_starts_at_version_0_and_position_1(catalog: Catalog, expected: int) -> None:
    plan = plan_batch([write(append("order-1", expected, 3))], catalog, now_us=NOW_US)

    assert succeeded(plan.outcomes[0]) == [result(0, 2, 1, 3)]
    (op,) = appends_of(plan)
    assert (op.store, op.stream, op.first_version, op.first_position) == (
        "default",
        "order-1",
        0,
        1,
    )
    assert len(op.events) == 3


@pytest.mark.parametrize("expected", [EXPECT_ANY, EXPECT_STREAM_EXISTS, 1])
def test_an_existing_stream_accepts_a_matching_expectation(catalog: Catalog, expected: int) -> None:
    given_stream(catalog, "order-1", 2)

    plan = plan_batch([write(append("order-1", expected, 1))], catalog, now_us=NOW_US)

    assert succeeded(plan.outcomes[0]) == [result(2, 2, 3, 3)]
    assert len(plan.ops) == 1


@pytest.mark.parametrize(
    ("existing_events", "expected", "actual", "described"),
    [
        (0, EXPECT_STREAM_EXISTS, -1, "stream_exists"),
        (0, 0, -1, 0),
        (2, EXPECT_NO_STREAM, 1, "no_stream"),
        (2, 0, 1, 0),
        (2, 2, 1, 2),
    ],
)
def test_a_wrong_expected_version_plans_nothing_and_names_the_actual_version(
    catalog: Catalog, existing_events: int, expected: int, actual: int, described: int | str
) -> None:
    if existing_events:
        given_stream(catalog, "order-1", existing_events)

    plan = plan_batch([write(append("order-1", expected, 1))], catalog, now_us=NOW_US)

    error = failed(plan.outcomes[0], ErrorCode.WRONG_EXPECTED_VERSION)
    assert error.details["actual_version"] == actual
    assert error.details["expected_version"] == described
    assert error.details["stream"] == "order-1"
    assert plan.ops == []


def test_a_tombstoned_stream_takes_no_appends(catalog: Catalog) -> None:
    store = catalog.get("default")
    with store.transaction(catalog.applied_sequence()) as txn:
        txn.put_stream_state("order-1", StreamState(version=4, state=STREAM_TOMBSTONED))

    plan = plan_batch([write(append("order-1", EXPECT_ANY, 1))], catalog, now_us=NOW_US)

    failed(plan.outcomes[0], ErrorCode.STREAM_DELETED)
    assert plan.ops == []


# -- versions and positions -------------------------------------------------------------------


def test_positions_are_dense_across_streams_requests_and_batches(catalog: Catalog) -> None:
    given_stream(catalog, "user-7", 2)  # positions 1-2

    plan = plan_batch(
        [
            write(append("order-1", EXPECT_NO_STREAM, 2)),
            write(append("user-7", 1, 1), append("order-10", EXPECT_NO_STREAM, 3)),
            write(append("order-1", 1, 1)),
        ],
        catalog,
        now_us=NOW_US,
    )

    assert [succeeded(o) for o in plan.outcomes] == [
        [result(0, 1, 3, 4)],
        [result(2, 2, 5, 5), result(0, 2, 6, 8)],
        [result(2, 2, 9, 9)],
    ]
    assert [(op.stream, op.first_version, op.first_position) for op in appends_of(plan)] == [
        ("order-1", 0, 3),
        ("user-7", 2, 5),
        ("order-10", 0, 6),
        ("order-1", 2, 9),
    ]


def test_later_requests_in_a_batch_see_the_effects_of_earlier_ones(catalog: Catalog) -> None:
    plan = plan_batch(
        [
            write(append("order-1", EXPECT_NO_STREAM, 2)),
            write(append("order-1", EXPECT_NO_STREAM, 1)),
            write(append("order-1", EXPECT_STREAM_EXISTS, 1)),
        ],
        catalog,
        now_us=NOW_US,
    )

    assert succeeded(plan.outcomes[0]) == [result(0, 1, 1, 2)]
    assert failed(plan.outcomes[1], ErrorCode.WRONG_EXPECTED_VERSION).details["actual_version"] == 1
    assert succeeded(plan.outcomes[2]) == [result(2, 2, 3, 3)]


def test_planning_stamps_the_events_and_leaves_the_store_alone(catalog: Catalog) -> None:
    event = new_event("OrderPlaced")

    plan = plan_batch([write(append("order-1", EXPECT_ANY, [event]))], catalog, now_us=42)

    (op,) = appends_of(plan)
    (stamped,) = op.events
    assert (
        stamped.event_id,
        stamped.type,
        stamped.data,
        stamped.metadata,
        stamped.content_type,
    ) == (
        event.event_id,
        event.type,
        event.data,
        event.metadata,
        event.content_type,
    )
    assert stamped.created_us == 42
    store = catalog.get("default")
    assert store.last_position() == 0
    assert store.stream_state("order-1") is None
    assert catalog.applied_sequence() == 1


# -- atomicity ----------------------------------------------------------------------------------


def test_one_failing_append_fails_its_whole_request_but_not_the_batch(catalog: Catalog) -> None:
    given_stream(catalog, "user-7", 1)  # position 1

    plan = plan_batch(
        [
            write(append("order-1", EXPECT_ANY, 2)),
            write(
                append("order-10", EXPECT_NO_STREAM, 2),
                append("user-7", EXPECT_NO_STREAM, 1),  # wrong: user-7 is at 0
            ),
            write(append("order-10", EXPECT_NO_STREAM, 1)),
        ],
        catalog,
        now_us=NOW_US,
    )

    assert succeeded(plan.outcomes[0]) == [result(0, 1, 2, 3)]
    error = failed(plan.outcomes[1], ErrorCode.WRONG_EXPECTED_VERSION)
    assert (error.details["stream"], error.details["actual_version"]) == ("user-7", 0)
    # The failed request took no positions and left order-10 new.
    assert succeeded(plan.outcomes[2]) == [result(0, 0, 4, 4)]
    assert [(op.stream, op.first_position) for op in appends_of(plan)] == [
        ("order-1", 2),
        ("order-10", 4),
    ]


def test_an_unknown_store_is_not_found_and_the_batch_goes_on(catalog: Catalog) -> None:
    plan = plan_batch(
        [write(append("order-1"), store="nowhere"), write(append("order-1"))],
        catalog,
        now_us=NOW_US,
    )

    error = failed(plan.outcomes[0], ErrorCode.NOT_FOUND)
    assert error.details["store"] == "nowhere"
    assert succeeded(plan.outcomes[1]) == [result(0, 0, 1, 1)]
    assert [op.store for op in appends_of(plan)] == ["default"]


# -- idempotency ----------------------------------------------------------------------------


def test_a_retry_of_an_applied_write_returns_the_original_result(catalog: Catalog) -> None:
    request = write(append("order-1", EXPECT_NO_STREAM, 2), append("user-7", EXPECT_NO_STREAM, 1))
    (original,), _ = plan_and_apply(catalog, request)
    plan_and_apply(catalog, write(append("order-1", EXPECT_ANY, 1)))  # the streams moved on

    plan = plan_batch([request], catalog, now_us=NOW_US + 1)

    assert plan.outcomes == [original]
    assert succeeded(original) == [result(0, 1, 1, 2), result(0, 0, 3, 3)]
    assert plan.ops == []


def test_a_retry_in_the_same_batch_returns_the_first_result(catalog: Catalog) -> None:
    request = write(append("order-1", EXPECT_NO_STREAM, 2))

    plan = plan_batch([request, write(append("user-7")), request], catalog, now_us=NOW_US)

    assert succeeded(plan.outcomes[0]) == [result(0, 1, 1, 2)]
    assert plan.outcomes[2] == plan.outcomes[0]
    assert [op.stream for op in appends_of(plan)] == ["order-1", "user-7"]


def test_a_partial_overlap_with_stored_events_is_a_conflict(catalog: Catalog) -> None:
    stored = new_event()
    plan_and_apply(catalog, write(append("order-1", EXPECT_ANY, [stored])))

    plan = plan_batch(
        [write(append("order-1", EXPECT_ANY, [stored, new_event()]))], catalog, now_us=NOW_US
    )

    failed(plan.outcomes[0], ErrorCode.IDEMPOTENCY_CONFLICT)
    assert plan.ops == []


def test_a_partial_overlap_across_the_appends_of_a_request_is_a_conflict(catalog: Catalog) -> None:
    stored = new_event()
    plan_and_apply(catalog, write(append("order-1", EXPECT_ANY, [stored])))

    plan = plan_batch(
        [write(append("order-1", EXPECT_ANY, [stored]), append("user-7", EXPECT_ANY, 1))],
        catalog,
        now_us=NOW_US,
    )

    failed(plan.outcomes[0], ErrorCode.IDEMPOTENCY_CONFLICT)
    assert plan.ops == []


def test_a_partial_overlap_with_the_same_batch_is_a_conflict(catalog: Catalog) -> None:
    shared = new_event()

    plan = plan_batch(
        [
            write(append("order-1", EXPECT_ANY, [shared])),
            write(append("order-1", EXPECT_ANY, [shared, new_event()])),
        ],
        catalog,
        now_us=NOW_US,
    )

    succeeded(plan.outcomes[0])
    failed(plan.outcomes[1], ErrorCode.IDEMPOTENCY_CONFLICT)
    assert len(plan.ops) == 1


def test_event_ids_stored_in_another_stream_are_a_conflict(catalog: Catalog) -> None:
    events = [new_event(), new_event()]
    plan_and_apply(catalog, write(append("order-1", EXPECT_ANY, events)))

    plan = plan_batch([write(append("user-7", EXPECT_ANY, events))], catalog, now_us=NOW_US)

    failed(plan.outcomes[0], ErrorCode.IDEMPOTENCY_CONFLICT)
    assert plan.ops == []


@pytest.mark.parametrize(
    "appends",
    [
        [],
        [StreamAppend("s-1", EXPECT_ANY, [])],
        [
            StreamAppend("s-1", EXPECT_ANY, [NewEvent(b"\x01" * 16, "T", b"", b"", "x")]),
            StreamAppend("s-1", EXPECT_ANY, [NewEvent(b"\x02" * 16, "T", b"", b"", "x")]),
        ],
        [StreamAppend("s-1", EXPECT_ANY, [NewEvent(b"\x01" * 16, "T", b"", b"", "x")] * 2)],
        [StreamAppend("s-1", EXPECT_ANY, [NewEvent(b"short", "T", b"", b"", "x")])],
    ],
)
def test_malformed_internal_writes_are_rejected_not_logged(
    catalog: Catalog, appends: list[StreamAppend]
) -> None:
    plan = plan_batch([WriteRequest("default", appends)], catalog, now_us=1)
    assert plan.ops == []
    assert plan.outcomes[0].error is not None
    assert plan.outcomes[0].error.code == "invalid_request"
