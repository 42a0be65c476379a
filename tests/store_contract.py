"""The storage port's behaviour, as one suite every `Store` implementation must pass.

Subclass `StoreContract` in a `Test...` class and provide a `store` fixture yielding an empty,
writable store."""

from __future__ import annotations

import pytest

from esdb.shared.storage.port import Store
from esdb.shared.storage.records import STREAM_DELETED, EventRecord, StreamState
from tests.builders import commit, record

# Three streams interleaved so no stream's events are contiguous in the log; `order-1` is a
# prefix of `order-10` on purpose.
SEED = [
    ("order-1", "Created"),
    ("user-7", "Registered"),
    ("order-10", "Created"),
    ("order-1", "ItemAdded"),
    ("order-1", "ItemAdded"),
    ("user-7", "Renamed"),
    ("order-10", "Paid"),
    ("order-1", "Paid"),
    ("user-7", "Renamed"),
    ("order-1", "Shipped"),
]


def stream_of(records: list[EventRecord], stream: str) -> list[EventRecord]:
    return [r for r in records if r.stream == stream]


def positions(records: list[EventRecord]) -> list[int]:
    return [r.position for r in records]


def versions(records: list[EventRecord]) -> list[int]:
    return [r.version for r in records]


class StoreContract:
    """Tests every store implementation must pass; subclasses provide the `store` fixture."""

    @pytest.fixture
    def seeded(self, store: Store) -> list[EventRecord]:
        """`SEED` committed as log sequence 1."""
        return commit(store, 1, SEED)

    # -- empty store ----------------------------------------------------------------------

    def test_an_empty_store_has_nothing(self, store: Store) -> None:
        assert store.applied_sequence() == 0
        assert store.last_position() == 0
        assert store.stream_state("order-1") is None
        assert store.event_position(b"\x01" * 16) is None
        assert store.get_event(1) is None
        assert store.read_stream("order-1", 0, backward=False, limit=10) == []
        assert store.read_stream("order-1", None, backward=True, limit=10) == []
        assert store.read_all(1, backward=False, limit=10) == ([], None)
        assert store.read_all(None, backward=True, limit=10) == ([], None)
        assert store.list_streams(None, 10) == []

    # -- transactions ---------------------------------------------------------------------

    def test_a_commit_stores_events_states_and_the_sequence(self, store: Store) -> None:
        written = commit(store, 7, [("order-1", "Created"), ("order-1", "Paid")])

        assert store.applied_sequence() == 7
        assert store.last_position() == 2
        assert [store.get_event(p) for p in (1, 2)] == written
        assert [store.event_position(r.event_id) for r in written] == [1, 2]
        assert store.stream_state("order-1") == StreamState(version=1)

    def test_commits_accumulate(self, store: Store) -> None:
        first = commit(store, 1, [("order-1", "Created")])
        second = commit(store, 2, [("order-1", "Paid"), ("user-7", "Registered")])

        assert store.applied_sequence() == 2
        assert store.last_position() == 3
        assert store.read_all(1, backward=False, limit=10) == (first + second, None)
        assert store.stream_state("order-1") == StreamState(version=1)
        assert store.stream_state("user-7") == StreamState(version=0)

    def test_a_commit_without_events_only_moves_the_sequence(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        with store.transaction(5):
            pass

        assert store.applied_sequence() == 5
        assert store.last_position() == len(seeded)
        assert store.read_all(1, backward=False, limit=100) == (seeded, None)

    def test_a_transaction_that_raises_writes_nothing(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        streams_before = store.list_streams(None, 100)
        doomed = record("order-1", 5, len(seeded) + 1)

        with pytest.raises(RuntimeError, match="boom"), store.transaction(2) as txn:
            txn.put_event(doomed)
            txn.put_stream_state("order-1", StreamState(version=5))
            txn.put_stream_state("brand-new", StreamState(version=0))
            raise RuntimeError("boom")

        assert store.applied_sequence() == 1
        assert store.last_position() == len(seeded)
        assert store.get_event(doomed.position) is None
        assert store.event_position(doomed.event_id) is None
        assert store.stream_state("order-1") == StreamState(version=4)
        assert store.stream_state("brand-new") is None
        assert store.list_streams(None, 100) == streams_before

    def test_stream_state_keeps_lifecycle_and_metadata(self, store: Store) -> None:
        state = StreamState(version=3, state=STREAM_DELETED, metadata={"max_count": 5})
        with store.transaction(1) as txn:
            txn.put_stream_state("order-1", state)
        assert store.stream_state("order-1") == state

        with store.transaction(2) as txn:
            txn.put_stream_state("order-1", StreamState(version=4))
        assert store.stream_state("order-1") == StreamState(version=4)

    def test_a_transaction_reads_the_stream_states_it_has_written(self, store: Store) -> None:
        with store.transaction(1) as txn:
            txn.put_stream_state("order-1", StreamState(version=2))
            txn.put_stream_state("doomed", StreamState(version=0))
        with store.transaction(2) as txn:
            assert txn.stream_state("order-1") == StreamState(version=2)
            assert txn.stream_state("nobody") is None
            txn.put_stream_state("order-1", StreamState(version=3, state=STREAM_DELETED))
            txn.delete_stream_state("doomed")
            assert txn.stream_state("order-1") == StreamState(version=3, state=STREAM_DELETED)
            assert txn.stream_state("doomed") is None

    # -- point lookups --------------------------------------------------------------------

    def test_events_are_found_by_position_and_by_id(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        for expected in seeded:
            assert store.get_event(expected.position) == expected
            assert store.event_position(expected.event_id) == expected.position
        assert store.get_event(0) is None
        assert store.get_event(len(seeded) + 1) is None
        assert store.event_position(record("order-1", 0, 1).event_id) is None

    # -- read_stream ----------------------------------------------------------------------

    def test_read_stream_forward_from_the_start(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        page = store.read_stream("order-1", 0, backward=False, limit=100)

        assert page == stream_of(seeded, "order-1")
        assert versions(page) == [0, 1, 2, 3, 4]

    def test_read_stream_forward_from_a_version(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        page = store.read_stream("order-1", 2, backward=False, limit=100)
        assert page == stream_of(seeded, "order-1")[2:]

    def test_read_stream_forward_stops_at_the_limit(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        page = store.read_stream("order-1", 1, backward=False, limit=2)
        assert versions(page) == [1, 2]

    def test_read_stream_forward_from_the_end_or_past_it_is_empty(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        assert store.read_stream("order-1", None, backward=False, limit=10) == []
        assert store.read_stream("order-1", 5, backward=False, limit=10) == []

    def test_read_stream_backward_from_the_end(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        page = store.read_stream("order-1", None, backward=True, limit=100)

        assert page == stream_of(seeded, "order-1")[::-1]
        assert versions(page) == [4, 3, 2, 1, 0]

    def test_read_stream_backward_from_a_version(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        assert versions(store.read_stream("order-1", 2, backward=True, limit=100)) == [2, 1, 0]
        assert versions(store.read_stream("order-1", 3, backward=True, limit=2)) == [3, 2]

    def test_read_stream_backward_from_past_the_end_starts_at_the_last_event(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        assert versions(store.read_stream("order-1", 99, backward=True, limit=2)) == [4, 3]

    def test_read_stream_backward_from_before_the_start_is_empty(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        assert store.read_stream("order-1", -1, backward=True, limit=10) == []

    @pytest.mark.parametrize("backward", [False, True])
    def test_read_stream_reads_only_its_own_stream(
        self, store: Store, seeded: list[EventRecord], backward: bool
    ) -> None:
        start = None if backward else 0
        for stream in ("order-1", "order-10", "user-7"):
            page = store.read_stream(stream, start, backward=backward, limit=100)
            assert {r.stream for r in page} == {stream}
            assert len(page) == len(stream_of(seeded, stream))
        assert store.read_stream("order-", start, backward=backward, limit=100) == []
        assert store.read_stream("nobody", start, backward=backward, limit=100) == []

    @pytest.mark.parametrize("backward", [False, True])
    def test_read_stream_pages_never_skip_or_repeat(self, store: Store, backward: bool) -> None:
        written = commit(store, 1, [("order-1", "ItemAdded")] * 7 + [("user-7", "Renamed")])
        expected = written[:7][::-1] if backward else written[:7]

        read: list[EventRecord] = []
        cursor: int | None = None if backward else 0
        for _ in range(len(written)):
            page = store.read_stream("order-1", cursor, backward=backward, limit=3)
            read += page
            if len(page) < 3:
                break
            cursor = page[-1].version + (-1 if backward else 1)

        assert read == expected

    # -- read_all -------------------------------------------------------------------------

    def test_read_all_forward_from_the_start(self, store: Store, seeded: list[EventRecord]) -> None:
        assert store.read_all(1, backward=False, limit=100) == (seeded, None)
        # Position 0 is before the first event: the same as the start.
        assert store.read_all(0, backward=False, limit=100) == (seeded, None)

    def test_read_all_forward_page_points_at_the_next_position(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        page, next_position = store.read_all(3, backward=False, limit=4)

        assert positions(page) == [3, 4, 5, 6]
        assert next_position == 7

    def test_read_all_forward_has_no_next_at_the_end(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        last = len(seeded)
        # A page that ends exactly on the last event already knows it is the end.
        assert store.read_all(last - 1, backward=False, limit=2) == (seeded[-2:], None)
        assert store.read_all(last + 1, backward=False, limit=2) == ([], None)

    def test_read_all_forward_from_the_end_is_empty(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        assert store.read_all(None, backward=False, limit=10) == ([], None)

    def test_read_all_backward_from_the_end(self, store: Store, seeded: list[EventRecord]) -> None:
        page, next_position = store.read_all(None, backward=True, limit=3)

        assert page == seeded[::-1][:3]
        assert next_position == len(seeded) - 3

    def test_read_all_backward_from_past_the_end_starts_at_the_last_event(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        page, _ = store.read_all(len(seeded) + 50, backward=True, limit=1)
        assert page == seeded[-1:]

    def test_read_all_backward_has_no_next_at_the_start(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        assert store.read_all(2, backward=True, limit=2) == (seeded[1::-1], None)
        assert store.read_all(0, backward=True, limit=2) == ([], None)

    @pytest.mark.parametrize("backward", [False, True])
    def test_read_all_pages_never_skip_or_repeat(
        self, store: Store, seeded: list[EventRecord], backward: bool
    ) -> None:
        read: list[EventRecord] = []
        cursor: int | None = None if backward else 1
        for _ in range(len(seeded)):
            page, cursor = store.read_all(cursor, backward=backward, limit=3)
            read += page
            if cursor is None:
                break

        assert cursor is None
        assert read == (seeded[::-1] if backward else seeded)

    @pytest.mark.parametrize("backward", [False, True])
    def test_read_all_filters_with_a_predicate(
        self, store: Store, seeded: list[EventRecord], backward: bool
    ) -> None:
        def is_user(r: EventRecord) -> bool:
            return r.category == "user"

        expected = [r for r in seeded if is_user(r)]
        page, next_position = store.read_all(
            None if backward else 1, backward=backward, limit=100, predicate=is_user
        )

        assert page == (expected[::-1] if backward else expected)
        assert next_position is None

    def test_read_all_with_a_predicate_stops_after_the_limit_matches(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        paid = [r for r in seeded if r.type == "Paid"]
        page, next_position = store.read_all(
            1, backward=False, limit=1, predicate=lambda r: r.type == "Paid"
        )

        assert page == paid[:1]
        assert next_position == paid[0].position + 1

    def test_read_all_returns_a_partial_page_when_the_scan_budget_runs_out(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        nothing = store.read_all(
            1, backward=False, limit=10, predicate=lambda r: False, scan_budget=4
        )
        assert nothing == ([], 5)

        nothing = store.read_all(
            None, backward=True, limit=10, predicate=lambda r: False, scan_budget=4
        )
        assert nothing == ([], len(seeded) - 4)

        page, next_position = store.read_all(
            1, backward=False, limit=10, predicate=lambda r: r.stream == "user-7", scan_budget=4
        )
        assert positions(page) == [2]  # user-7's events sit at 2, 6, 9
        assert next_position == 5

    @pytest.mark.parametrize("backward", [False, True])
    def test_read_all_budgeted_pages_find_every_match(
        self, store: Store, seeded: list[EventRecord], backward: bool
    ) -> None:
        def is_created(r: EventRecord) -> bool:
            return r.type == "Created"

        read: list[EventRecord] = []
        cursor: int | None = None if backward else 1
        for _ in range(len(seeded)):
            page, cursor = store.read_all(
                cursor, backward=backward, limit=10, predicate=is_created, scan_budget=3
            )
            read += page
            if cursor is None:
                break

        expected = [r for r in seeded if is_created(r)]
        assert cursor is None
        assert read == (expected[::-1] if backward else expected)

    # -- list_streams ---------------------------------------------------------------------

    def test_list_streams_in_name_order_with_their_states(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        assert store.list_streams(None, 100) == [
            ("order-1", StreamState(version=4)),
            ("order-10", StreamState(version=1)),
            ("user-7", StreamState(version=2)),
        ]

    def test_list_streams_pages_with_after(self, store: Store) -> None:
        names = [f"stream-{i:02}" for i in range(7)]
        with store.transaction(1) as txn:
            for name in reversed(names):
                txn.put_stream_state(name, StreamState(version=0))

        read: list[str] = []
        after: str | None = None
        for _ in range(len(names)):
            page = store.list_streams(after, 3)
            assert len(page) <= 3
            if not page:
                break
            read += [name for name, _ in page]
            after = page[-1][0]

        assert read == names

    def test_list_streams_after_a_name_that_is_not_a_stream(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        assert [n for n, _ in store.list_streams("order-2", 100)] == ["user-7"]
        assert [n for n, _ in store.list_streams("a", 1)] == ["order-1"]
        assert store.list_streams("user-7", 100) == []
        assert store.list_streams("zzz", 100) == []

    # -- item tables ----------------------------------------------------------------------

    @pytest.fixture
    def items(self, store: Store) -> list[bytes]:
        """Keys under prefixes `a\\0`, `ab\\0` and `b\\0` (plus one key `a\\xff` right after
        every `a\\0` key), each with its key as value."""
        keys = [b"a\x00" + bytes([i]) for i in range(5)] + [b"a\xff", b"ab\x00x", b"b\x00y"]
        with store.transaction(1) as txn:
            for key in reversed(keys):
                txn.put_item("parked", key, key)
        return sorted(keys)

    def test_items_are_put_and_read_by_key(self, store: Store, items: list[bytes]) -> None:
        assert store.get_item("parked", b"a\x00\x02") == b"a\x00\x02"
        assert store.get_item("parked", b"missing") is None
        assert store.get_item("snapshots", b"a\x00\x02") is None

    def test_items_with_a_prefix_in_key_order(self, store: Store, items: list[bytes]) -> None:
        everything = [(k, k) for k in items]
        assert store.items("parked", b"", limit=100) == everything
        assert [k for k, _ in store.items("parked", b"a\x00", limit=100)] == items[:5]
        assert [k for k, _ in store.items("parked", b"a\x00", limit=2)] == items[:2]
        assert store.items("parked", b"zz", limit=10) == []

    def test_items_page_forward_and_backward(self, store: Store, items: list[bytes]) -> None:
        prefix = b"a\x00"
        after = store.items("parked", prefix, after=items[1], limit=100)
        assert [k for k, _ in after] == items[2:5]
        backward = store.items("parked", prefix, limit=100, backward=True)
        assert [k for k, _ in backward] == items[4::-1]
        below = store.items("parked", prefix, after=items[3], limit=2, backward=True)
        assert [k for k, _ in below] == [items[2], items[1]]
        beyond = store.items("parked", prefix, after=b"zz", limit=1, backward=True)
        assert [k for k, _ in beyond] == [items[4]]

    def test_items_are_deleted_and_overwritten(self, store: Store, items: list[bytes]) -> None:
        with store.transaction(2) as txn:
            txn.delete_item("parked", items[0])
            txn.delete_item("parked", b"never-there")
            txn.put_item("parked", items[1], b"new")

        assert store.get_item("parked", items[0]) is None
        assert store.get_item("parked", items[1]) == b"new"
        assert [k for k, _ in store.items("parked", b"a\x00", limit=100)] == items[1:5]

    def test_items_of_a_failed_transaction_are_not_written(
        self, store: Store, items: list[bytes]
    ) -> None:
        with pytest.raises(RuntimeError), store.transaction(2) as txn:
            txn.put_item("parked", b"c", b"c")
            txn.delete_item("parked", items[0])
            raise RuntimeError("boom")

        assert store.get_item("parked", b"c") is None
        assert store.get_item("parked", items[0]) == items[0]

    def test_items_are_deleted_by_prefix(self, store: Store, items: list[bytes]) -> None:
        with store.transaction(2) as txn:
            txn.delete_items("parked", b"a\x00")
            txn.delete_items("parked", b"nothing")

        assert [k for k, _ in store.items("parked", b"", limit=100)] == items[5:]

    def test_items_are_counted_by_prefix(self, store: Store, items: list[bytes]) -> None:
        assert store.count_items("parked", b"a\x00") == 5
        assert store.count_items("parked", b"a") == 7
        assert store.count_items("parked", b"") == len(items)
        assert store.count_items("parked", b"zz") == 0

    # -- scavenging -----------------------------------------------------------------------

    def test_deleted_events_are_gone_from_every_read(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        order1 = stream_of(seeded, "order-1")
        with store.transaction(2) as txn:
            for record in order1[:3]:
                txn.delete_event(record)

        kept = [r for r in seeded if r not in order1[:3]]
        assert store.read_all(1, backward=False, limit=100) == (kept, None)
        assert store.read_all(None, backward=True, limit=100)[0] == kept[::-1]
        assert store.read_stream("order-1", 0, backward=False, limit=100) == order1[3:]
        assert store.read_stream("order-1", None, backward=True, limit=100) == order1[:2:-1]
        assert store.read_stream("order-1", 0, backward=False, limit=1) == order1[3:4]
        assert store.get_event(order1[0].position) is None
        assert store.event_position(order1[0].event_id) is None
        assert store.last_position() == len(seeded)
        assert store.stream_state("order-1") == StreamState(version=4)

    def test_appends_after_a_scavenge_take_the_next_positions(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        with store.transaction(2) as txn:
            txn.delete_event(seeded[-1])
        (added,) = commit(store, 3, [("order-1", "Again")])

        assert added.position == len(seeded) + 1
        assert store.read_all(len(seeded), backward=False, limit=10) == ([added], None)

    def test_a_forgotten_stream_state_is_gone(
        self, store: Store, seeded: list[EventRecord]
    ) -> None:
        with store.transaction(2) as txn:
            txn.delete_stream_state("user-7")
            txn.delete_stream_state("never-was")

        assert store.stream_state("user-7") is None
        assert [n for n, _ in store.list_streams(None, 100)] == ["order-1", "order-10"]
