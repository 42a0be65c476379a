"""The LMDB store passes the storage contract, survives reopening, and serves readers in
other processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from esdb.shared.names import MAX_STREAM_BYTES
from esdb.shared.storage.lmdb_store import LmdbStore, store_exists
from esdb.shared.storage.records import EventRecord, StreamState
from tests.builders import commit
from tests.store_contract import StoreContract

# Small enough for a tmp dir; the contract tests write a few kilobytes.
MAP_SIZE = 16 << 20


class TestLmdbStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LmdbStore]:
        store = LmdbStore(tmp_path / "store", map_size=MAP_SIZE)
        yield store
        store.close()


def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store"
    assert not store_exists(path)
    store = LmdbStore(path, map_size=MAP_SIZE)
    written = commit(store, 3, [("order-1", "Created"), ("user-7", "Registered")])
    store.close()
    assert store_exists(path)

    reopened = LmdbStore(path, map_size=MAP_SIZE)
    try:
        assert reopened.applied_sequence() == 3
        assert reopened.last_position() == 2
        assert reopened.read_all(1, backward=False, limit=10) == (written, None)
        assert reopened.stream_state("order-1") == StreamState(version=0)
        assert reopened.event_position(written[1].event_id) == 2

        # And it goes on where it left off.
        more = commit(reopened, 4, [("order-1", "Paid")])
        assert (more[0].version, more[0].position) == (1, 3)
    finally:
        reopened.close()


# A reader process: opens the store read-only, prints what it sees, and again each time it
# reads a line on stdin, so the test can commit between two looks.
_READER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from esdb.shared.storage.lmdb_store import LmdbStore

    store = LmdbStore(Path(sys.argv[1]), readonly=True, map_size=int(sys.argv[2]))

    def look():
        events, _ = store.read_all(1, backward=False, limit=100)
        order_1 = store.read_stream("order-1", 0, backward=False, limit=100)
        state = store.stream_state("order-1")
        print(json.dumps({
            "applied": store.applied_sequence(),
            "last_position": store.last_position(),
            "positions": [e.position for e in events],
            "order_1": [e.version for e in order_1],
            "order_1_version": None if state is None else state.version,
        }), flush=True)

    look()
    for _ in sys.stdin:
        look()
    store.close()
    """
)


def test_a_read_only_store_in_another_process_sees_committed_data(tmp_path: Path) -> None:
    path = tmp_path / "store"
    writer = LmdbStore(path, map_size=MAP_SIZE)
    commit(writer, 1, [("order-1", "Created"), ("user-7", "Registered")])
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(path), str(MAP_SIZE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdin is not None and reader.stdout is not None
        assert json.loads(reader.stdout.readline()) == {
            "applied": 1,
            "last_position": 2,
            "positions": [1, 2],
            "order_1": [0],
            "order_1_version": 0,
        }

        # Committed after the reader opened the store: it must see it on its next look.
        commit(writer, 2, [("order-1", "Paid")])
        reader.stdin.write("look\n")
        reader.stdin.flush()
        assert json.loads(reader.stdout.readline()) == {
            "applied": 2,
            "last_position": 3,
            "positions": [1, 2, 3],
            "order_1": [0, 1],
            "order_1_version": 1,
        }

        reader.stdin.close()
        assert reader.wait(timeout=30) == 0
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
        writer.close()


def test_the_longest_stream_id_the_gateway_accepts_fits_lmdb_keys(tmp_path: Path) -> None:
    stream = "s" * MAX_STREAM_BYTES
    store = LmdbStore(tmp_path / "store")
    try:
        (written,) = commit(store, 1, [(stream, "Happened")])
        assert store.read_stream(stream, 0, backward=False, limit=1) == [written]
    finally:
        store.close()


def test_a_read_all_predicate_sees_stream_states_of_the_scan_s_own_snapshot(
    tmp_path: Path,
) -> None:
    store = LmdbStore(tmp_path / "store", map_size=MAP_SIZE)
    try:
        commit(store, 2, [("order-1", "Created"), ("order-2", "Created")])
        seen: list[StreamState | None] = []

        def predicate(record: EventRecord) -> bool:
            if not seen:
                # A write landing during the scan is not in its snapshot...
                with store.transaction(3) as txn:
                    txn.put_stream_state("order-2", StreamState(version=0, state="tombstoned"))
            seen.append(store.stream_state(record.stream))
            return True

        page, _ = store.read_all(1, backward=False, limit=10, predicate=predicate)
        assert len(page) == 2
        assert seen == [StreamState(version=0), StreamState(version=0)]
        # ...and outside a scan, lookups see the latest state again.
        assert store.stream_state("order-2") == StreamState(version=0, state="tombstoned")
    finally:
        store.close()


def test_a_reader_opens_a_store_written_before_its_newer_tables_existed(tmp_path: Path) -> None:
    # A store as an older esdb left it: the core tables, none of the item tables added since.
    path = tmp_path / "old"
    path.mkdir()
    env = lmdb.open(str(path), map_size=MAP_SIZE, max_dbs=8)
    for name in (b"events", b"streams", b"stream_meta", b"event_ids", b"meta"):
        env.open_db(name)
    env.close()

    reader = LmdbStore(path, readonly=True, map_size=MAP_SIZE)
    try:
        assert reader.items("projections", b"", limit=10) == []
        assert reader.get_item("projections", b"any") is None
        assert reader.count_items("subscriptions", b"") == 0
        # The writer (another process, as on a node) opens it and creates every table.
        writer = textwrap.dedent(
            """
            import sys
            from pathlib import Path
            from esdb.shared.storage.lmdb_store import LmdbStore
            store = LmdbStore(Path(sys.argv[1]), map_size=int(sys.argv[2]))
            with store.transaction(1) as txn:
                txn.put_item("projections", b"p", b"v")
            store.close()
            """
        )
        subprocess.run([sys.executable, "-c", writer, str(path), str(MAP_SIZE)], check=True)
        assert reader.get_item("projections", b"p") == b"v"  # seen once the writer made it
    finally:
        reader.close()


def test_held_reads_share_one_snapshot(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "store", map_size=MAP_SIZE)
    try:
        first = commit(store, 1, [("order-1", "Created")])
        with store.held_reads():
            assert store.stream_state("order-1") == StreamState(version=0)
            later = commit(store, 2, [("order-1", "Paid")])
            # Lookups inside read the transaction taken when the `with` began.
            assert store.stream_state("order-1") == StreamState(version=0)
            assert store.event_position(later[0].event_id) is None
            assert store.get_event(later[0].position) is None
            with store.held_reads():  # nested: the outer snapshot still
                assert store.event_position(first[0].event_id) == 1
                assert store.event_position(later[0].event_id) is None
            # `read_all` scans its own transaction and leaves the held one in place.
            assert [r.position for r in store.read_all(1, backward=False, limit=9)[0]] == [1, 2]
            assert store.get_event(later[0].position) is None
        assert store.stream_state("order-1") == StreamState(version=1)
        assert store.get_event(later[0].position) == later[0]
    finally:
        store.close()
