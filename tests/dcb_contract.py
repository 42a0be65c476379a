"""DCB through the writer's own path (plan, apply) and a store's DCB index: one suite, run
against the in-memory store (tests/unit) and LMDB (tests/integration)."""

from __future__ import annotations

from contextlib import AbstractContextManager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esdb.contracts.commands import (
    EXPECT_ANY,
    DcbCondition,
    DcbItem,
    NewEvent,
    StreamAppend,
    WriteOutcome,
    WriteRequest,
)
from esdb.contracts.dcb import DCB_STREAM, matches
from esdb.contracts.errors import ErrorCode
from esdb.shared.storage.catalog import Catalog
from tests.builders import DEFAULT_STORE, append, event_id, plan_and_apply, write


def dcb_event(type: str, *tags: str, id: bytes | None = None) -> NewEvent:
    """A DCB event with `tags`."""
    return NewEvent(id or event_id(), type, b"{}", b"", "application/json", tags)


def dcb_write(
    *events: NewEvent, condition: DcbCondition | None = None, fresh: bool = False
) -> WriteRequest:
    """A validated `dcb_append` of `events`."""
    return WriteRequest(
        DEFAULT_STORE,
        [StreamAppend(DCB_STREAM, EXPECT_ANY, list(events))],
        fresh_ids=fresh,
        condition=condition,
    )


def fail_if(*items: DcbItem, after: int | None = None) -> DcbCondition:
    """A condition on `items` after `after`."""
    return DcbCondition(items, after)


def item(types: tuple[str, ...] = (), tags: tuple[str, ...] = ()) -> DcbItem:
    return DcbItem(types, tags)


def position_of(outcome: WriteOutcome) -> int:
    assert outcome.error is None, outcome.error
    assert outcome.results is not None
    return outcome.results[-1].last_position


def refused_at(outcome: WriteOutcome) -> int:
    """The position a failed condition reports."""
    assert outcome.error is not None, outcome
    assert outcome.error.code == ErrorCode.APPEND_CONDITION_FAILED.value, outcome.error
    position = outcome.error.details["position"]
    assert isinstance(position, int)
    return position


def append_dcb(catalog: Catalog, *events: NewEvent, condition: DcbCondition | None = None) -> int:
    (outcome,), _ = plan_and_apply(catalog, dcb_write(*events, condition=condition))
    return position_of(outcome)


def read(
    catalog: Catalog,
    *items: DcbItem,
    after: int | None = None,
    backward: bool = False,
    limit: int = 1000,
) -> list[tuple[int, str, tuple[str, ...]]]:
    found, _ = catalog.get(DEFAULT_STORE).dcb_read(items, after, backward=backward, limit=limit)
    return [(r.position, r.type, r.tags) for r in found]


class DcbContract:
    """Override the `catalog` fixture with a catalog whose default store exists."""

    @pytest.fixture
    def catalog(self) -> Catalog:
        raise NotImplementedError

    def test_tags_are_stored_and_events_live_in_their_own_stream(self, catalog: Catalog) -> None:
        plan_and_apply(catalog, write(append("order-1")))
        position = append_dcb(catalog, dcb_event("Joined", "student-1", "course-9"))
        stored = catalog.get(DEFAULT_STORE).get_event(position)
        assert stored is not None
        assert (stored.stream, stored.version, stored.tags) == (
            DCB_STREAM,
            0,
            ("student-1", "course-9"),
        )
        assert read(catalog) == [(2, "Joined", ("student-1", "course-9"))]

    def test_queries_match_by_types_and_all_tags_of_any_item(self, catalog: Catalog) -> None:
        append_dcb(catalog, dcb_event("type1", "X"))
        append_dcb(catalog, dcb_event("type2", "A", "B"), dcb_event("type3", "A", "C"))
        append_dcb(catalog, dcb_event("type4"))
        positions = lambda *items, **kw: [p for p, _, _ in read(catalog, *items, **kw)]  # noqa: E731
        assert positions() == [1, 2, 3, 4]
        assert positions(item(("type1",))) == [1]
        assert positions(item(("type4", "type2"))) == [2, 4]
        assert positions(item(tags=("A",))) == [2, 3]
        assert positions(item(tags=("A", "B"))) == [2]
        assert positions(item(tags=("B",)), item(tags=("C",))) == [2, 3]
        assert positions(item(("type3",), ("C",)), item(("type2",), ("B",))) == [2, 3]
        assert positions(item(("type2",), ("C",))) == []
        assert positions(item(tags=("Y",))) == []
        assert positions(item(tags=("A",)), after=2) == [3]
        assert positions(item(tags=("A",)), item(("type1",)), backward=True) == [3, 2, 1]
        assert positions(backward=True, after=3) == [2, 1]
        assert positions(item(tags=("A",)), limit=1) == [2]

    def test_a_matching_event_after_the_condition_refuses_the_append(
        self, catalog: Catalog
    ) -> None:
        first = append_dcb(catalog, dcb_event("Registered", "course-1"))
        (outcome,), entry = plan_and_apply(
            catalog,
            dcb_write(
                dcb_event("Registered", "course-1"), condition=fail_if(item(tags=("course-1",)))
            ),
        )
        assert refused_at(outcome) == first
        assert entry is None  # nothing written
        assert read(catalog) == [(first, "Registered", ("course-1",))]
        after = fail_if(item(tags=("course-1",)), after=first)
        assert append_dcb(catalog, dcb_event("Renamed", "course-1"), condition=after) == first + 1

    def test_an_empty_query_matches_every_dcb_event_but_no_stream_event(
        self, catalog: Catalog
    ) -> None:
        plan_and_apply(catalog, write(append("order-1")))
        assert append_dcb(catalog, dcb_event("A"), condition=fail_if()) == 2
        (outcome,), _ = plan_and_apply(catalog, dcb_write(dcb_event("B"), condition=fail_if()))
        assert refused_at(outcome) == 2
        assert append_dcb(catalog, dcb_event("B"), condition=fail_if(after=2)) == 3

    def test_a_condition_on_a_tag_nobody_has_used_yet(self, catalog: Catalog) -> None:
        on_new = fail_if(item(("Claimed",), ("seat-42",)))
        assert append_dcb(catalog, dcb_event("Claimed", "seat-42"), condition=on_new) == 1
        (again,), _ = plan_and_apply(
            catalog, dcb_write(dcb_event("Claimed", "seat-42"), condition=on_new)
        )
        assert refused_at(again) == 1

    def test_of_two_conflicting_decisions_in_one_batch_the_second_fails(
        self, catalog: Catalog
    ) -> None:
        head = append_dcb(catalog, dcb_event("Opened", "course-1"))
        boundary = fail_if(item(tags=("course-1",)), after=head)
        unrelated = fail_if(item(tags=("course-2",)), after=head)
        outcomes, _ = plan_and_apply(
            catalog,
            dcb_write(dcb_event("Joined", "course-1", "s1"), condition=boundary),
            dcb_write(dcb_event("Joined", "course-1", "s2"), condition=boundary),
            dcb_write(dcb_event("Joined", "course-2", "s3"), condition=unrelated),
        )
        assert position_of(outcomes[0]) == head + 1
        assert refused_at(outcomes[1]) == head + 1
        assert position_of(outcomes[2]) == head + 2

    def test_a_retry_with_the_same_event_ids_returns_the_first_position(
        self, catalog: Catalog
    ) -> None:
        ids = [event_id(), event_id()]
        events = [dcb_event("Booked", "slot-1", id=ids[0]), dcb_event("Paid", "slot-1", id=ids[1])]
        boundary = fail_if(item(tags=("slot-1",)))
        assert append_dcb(catalog, *events, condition=boundary) == 2
        # The condition fails now (the first try's own events match it), but the ids say
        # this is the same append: the original result, nothing written twice.
        assert append_dcb(catalog, *events, condition=boundary) == 2
        assert len(read(catalog)) == 2

    def test_a_condition_over_a_long_history_uses_the_index(self, catalog: Catalog) -> None:
        store = catalog.get(DEFAULT_STORE)

        def steps_to_check(history: int) -> int:
            for start in range(0, history, 500):
                batch = [
                    dcb_event("Noise", f"other-{n}", "busy") for n in range(start, start + 500)
                ]
                plan_and_apply(catalog, dcb_write(*batch))
            tag = f"rare-{history}"
            rare = append_dcb(catalog, dcb_event("Rare", tag, "busy"))
            before = store.index_steps
            (outcome,), _ = plan_and_apply(
                catalog,
                dcb_write(
                    dcb_event("Rare", tag),
                    condition=fail_if(item(("Rare",), (tag, "busy")), after=0),
                ),
            )
            assert refused_at(outcome) == rare
            return store.index_steps - before

        short = steps_to_check(500)
        long = steps_to_check(5000)
        # Leapfrogging the rare tag's postings against the busy one's: a handful of seeks,
        # however many events share `busy` (a scan would visit thousands).
        assert short <= 8 and long <= 8, (short, long)


TYPES = ("A", "B", "C")
TAGS = ("t1", "t2", "t3", "t4")
ITEMS = st.lists(
    st.builds(
        DcbItem,
        st.lists(st.sampled_from(TYPES), max_size=2, unique=True).map(tuple),
        st.lists(st.sampled_from(TAGS), max_size=2, unique=True).map(tuple),
    ),
    max_size=3,
).map(tuple)
EVENTS = st.lists(
    st.tuples(
        st.sampled_from(TYPES),
        st.lists(st.sampled_from(TAGS), max_size=3, unique=True).map(tuple),
    ),
    min_size=1,
    max_size=3,
)
CONDITIONS = st.none() | st.builds(DcbCondition, ITEMS, st.none() | st.integers(0, 30))
Decision = tuple[list[tuple[str, tuple[str, ...]]], DcbCondition | None]


class Model:
    """The reference: DCB events in a list; a condition looks at each of them."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str, tuple[str, ...]]] = []

    def decide(self, decision: Decision, head: int) -> tuple[int | None, int | None]:
        """(position of the last event appended, None) or (None, first matching position);
        `head` is the store's last position, stream events included."""
        events, condition = decision
        if condition is not None:
            for position, kind, tags in self.events:
                if position > (condition.after or 0) and matches(condition.items, kind, tags):
                    return None, position
        for offset, (kind, tags) in enumerate(events, start=1):
            self.events.append((head + offset, kind, tags))
        return head + len(events), None

    def read(self, items: tuple[DcbItem, ...], after: int | None) -> list[int]:
        return [p for p, k, t in self.events if p > (after or 0) and matches(items, k, t)]


class DcbModelContract:
    """Random decisions, in random batches, agree with the reference model: each one lands
    or fails as the model says, and reads by random queries find what the model finds.
    Override `fresh_catalog` (a catalog whose default store exists, closed on exit)."""

    def fresh_catalog(self) -> AbstractContextManager[Catalog]:
        raise NotImplementedError

    # One suite, two stores: the same test runs on each subclass (its executor), which is
    # what `differing_executors` warns of; each example builds its own catalog.
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
    )
    @given(
        decided=st.lists(st.tuples(EVENTS, CONDITIONS), min_size=1, max_size=12),
        sizes=st.lists(st.integers(1, 4), min_size=12, max_size=12),
        queries=st.lists(st.tuples(ITEMS, st.none() | st.integers(0, 30)), max_size=4),
    )
    def test_random_decisions_agree_with_the_reference_model(
        self,
        decided: list[Decision],
        sizes: list[int],
        queries: list[tuple[tuple[DcbItem, ...], int | None]],
    ) -> None:
        model = Model()
        with self.fresh_catalog() as catalog:
            plan_and_apply(catalog, write(append("order-1")))  # a stream event: position 1
            head = 1
            start = 0
            for size in sizes:
                batch = decided[start : start + size]
                start += size
                if not batch:
                    break
                requests = [
                    dcb_write(*(dcb_event(k, *t) for k, t in events), condition=condition)
                    for events, condition in batch
                ]
                outcomes, _ = plan_and_apply(catalog, *requests)
                for decision, outcome in zip(batch, outcomes, strict=True):
                    landed, refused = model.decide(decision, head)
                    if landed is None:
                        assert refused_at(outcome) == refused
                    else:
                        assert position_of(outcome) == landed
                        head = landed
            for items, after in [((), None), *queries]:
                assert [p for p, _, _ in read(catalog, *items, after=after)] == model.read(
                    items, after
                )
                backward = read(catalog, *items, after=None, backward=True)
                assert [p for p, _, _ in backward] == model.read(items, None)[::-1]
