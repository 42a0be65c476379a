"""kurrentdbclient's names over the client's own operations: versions, events, filters, and
acks by event id."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from esdb.client import (
    CaughtUp,
    InvalidRequestError,
    KurrentRecordedEvent,
    RecordedEvent,
    StreamState,
)
from esdb.client.consumer import PersistentEvent
from esdb.client.kurrent_names import (
    KurrentCatchupSubscription,
    KurrentPersistentSubscription,
    as_kurrent,
    event_filter,
    expected_version,
)


def recorded(position: int, stream: str = "order-1", type_: str = "Placed") -> RecordedEvent:
    return RecordedEvent(
        event_id=str(uuid.UUID(int=position)),
        stream_id=stream,
        version=position - 1,
        position=position,
        event_type=type_,
        data=b"{}",
        metadata=b"",
        content_type="application/json",
        created=datetime(2024, 1, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (StreamState.ANY, "any"),
        (StreamState.NO_STREAM, "no_stream"),
        (StreamState.EXISTS, "stream_exists"),
        (0, 0),
        (41, 41),
    ],
)
def test_current_version_maps_onto_expected_version(current: object, expected: object) -> None:
    assert expected_version(current) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [None, "any", True, 1.5])
def test_anything_else_is_an_invalid_current_version(bad: object) -> None:
    with pytest.raises(InvalidRequestError, match="current_version"):
        expected_version(bad)  # type: ignore[arg-type]


def test_events_answer_to_kurrentdbclients_names() -> None:
    event = as_kurrent(recorded(7), retry_count=2)
    assert isinstance(event, RecordedEvent)
    assert event.type == "Placed"
    assert event.id == uuid.UUID(int=7) == event.ack_id
    assert (event.stream_name, event.stream_position, event.commit_position) == ("order-1", 6, 7)
    assert event.recorded_at == event.created
    assert event.retry_count == 2
    assert as_kurrent(event) is event


def test_include_filters_keep_full_matches_of_any_pattern() -> None:
    keep = event_filter(["Order.*", "Paid"], [], False)
    assert keep is not None
    kept = [t for t in ("OrderPlaced", "Paid", "Unpaid", "XOrder") if keep(recorded(1, type_=t))]
    assert kept == ["OrderPlaced", "Paid"]


def test_exclude_filters_drop_matches_and_apply_to_stream_names_when_asked() -> None:
    keep = event_filter([], ["account-.*"], True)
    assert keep is not None
    assert keep(recorded(1, stream="order-1"))
    assert not keep(recorded(1, stream="account-9"))
    assert event_filter([], [], True) is None


def test_a_bad_pattern_names_its_argument() -> None:
    with pytest.raises(InvalidRequestError, match="filter_include"):
        event_filter(["("], [], False)


class FakeSubscription:
    def __init__(self, items: list[RecordedEvent | CaughtUp]) -> None:
        self.items = items
        self.closed = False

    def __aiter__(self) -> FakeSubscription:
        return self

    async def __anext__(self) -> RecordedEvent | CaughtUp:
        if not self.items:
            raise StopAsyncIteration
        return self.items.pop(0)

    async def close(self) -> None:
        self.closed = True


async def test_a_catchup_subscription_filters_and_hides_caught_up_unless_asked() -> None:
    items: list[RecordedEvent | CaughtUp] = [
        recorded(1, type_="Placed"),
        recorded(2, type_="Paid"),
        CaughtUp(2),
        recorded(3, type_="Placed"),
    ]
    keep = event_filter(["Placed"], [], False)
    hidden = KurrentCatchupSubscription(FakeSubscription(list(items)), keep=keep)  # type: ignore[arg-type]
    assert [e.position async for e in hidden if isinstance(e, RecordedEvent)] == [1, 3]

    source = FakeSubscription(list(items))
    shown = KurrentCatchupSubscription(source, include_caught_up=True)  # type: ignore[arg-type]
    got = [item async for item in shown]
    assert got[2] == CaughtUp(2)
    assert all(isinstance(e, KurrentRecordedEvent) for e in got[:2] + got[3:])
    await shown.stop()
    assert source.closed


class FakeConsumer:
    consumer = "c1"

    def __init__(self, deliveries: list[PersistentEvent]) -> None:
        self.deliveries = deliveries
        self.acked: list[int] = []
        self.nacked: list[tuple[int, str]] = []

    def __aiter__(self) -> FakeConsumer:
        return self

    async def __anext__(self) -> PersistentEvent:
        if not self.deliveries:
            raise StopAsyncIteration
        return self.deliveries.pop(0)

    def ack(self, *positions: int) -> None:
        self.acked.extend(positions)

    def nack(self, *positions: int, action: str = "retry", reason: str = "") -> None:
        self.nacked.extend((p, action) for p in positions)

    async def close(self) -> None:
        pass


async def test_acks_and_nacks_take_events_ids_or_positions() -> None:
    consumer = FakeConsumer([PersistentEvent(recorded(p), attempt=p) for p in (1, 2, 3, 4, 5)])
    sub = KurrentPersistentSubscription(consumer)  # type: ignore[arg-type]
    one, two, three, four, _ = [event async for event in sub]
    assert [e.retry_count for e in (one, two, three)] == [0, 1, 2]
    await sub.ack(one)
    await sub.ack(two.id)
    await sub.ack(str(three.id))
    await sub.nack(four, action="park")
    await sub.nack(5, action="unknown")
    assert consumer.acked == [1, 2, 3]
    assert consumer.nacked == [(4, "park"), (5, "retry")]
    assert sub.subscription_id == "c1"


async def test_an_id_that_was_not_delivered_is_an_error() -> None:
    sub = KurrentPersistentSubscription(FakeConsumer([]))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="not delivered"):
        await sub.ack(uuid.uuid4())
    with pytest.raises(InvalidRequestError, match="not an event id"):
        await sub.ack("nope")
