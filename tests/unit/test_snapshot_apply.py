"""Snapshot ops in the deterministic apply: three key spaces kept in step, retention that sees
the ops before it in the same entry, and replay that rebuilds the same table."""

from __future__ import annotations

import msgspec
import pytest

from esdb.contracts.log import LogEntry, LogOp, SnapshotDeleteOp, SnapshotOp
from esdb.contracts.snapshots import StoredSnapshot, StoredSummary
from esdb.services.writer.apply import apply_entry
from esdb.shared.storage import item_keys
from esdb.shared.storage.catalog import Catalog, memory_catalog
from tests.builders import NOW_US, create_store

STORE = "default"


def record(
    version: int, *, source: str = "src", stream: str = "str", keep_last: int = 0
) -> SnapshotOp:
    return SnapshotOp(
        store=STORE,
        source_uuid=source,
        stream_uuid=stream,
        version=version,
        data=f'{{"v":{version}}}'.encode(),
        metadata=b"",
        content_type="application/json",
        created_us=NOW_US + version,
        keep_last=keep_last,
    )


def delete(version: int, *, source: str = "src", stream: str = "str") -> SnapshotDeleteOp:
    return SnapshotDeleteOp(STORE, source, stream, version)


def apply(catalog: Catalog, *ops: LogOp) -> None:
    apply_entry(catalog, catalog.applied_sequence() + 1, LogEntry(ops=list(ops)))


def table(catalog: Catalog) -> list[tuple[bytes, bytes]]:
    return catalog.get(STORE).items(item_keys.SNAPSHOTS, b"", limit=1 << 20)


def versions(catalog: Catalog, source: str = "src", stream: str = "str") -> list[int]:
    prefix = item_keys.snapshot_source_prefix(source, stream)
    found = catalog.get(STORE).items(item_keys.SNAPSHOTS, prefix, limit=1 << 20)
    return [item_keys.snapshot_version(key) for key, _ in found]


def test_a_record_writes_its_payload_and_both_indexes(catalog: Catalog) -> None:
    apply(catalog, record(3))
    store = catalog.get(STORE)
    raw = store.get_item(item_keys.SNAPSHOTS, item_keys.snapshot_data_key("src", "str", 3))
    assert raw is not None
    assert msgspec.msgpack.decode(raw, type=StoredSnapshot) == StoredSnapshot(
        b'{"v":3}', b"", "application/json", NOW_US + 3
    )
    summary = StoredSummary("application/json", 7, NOW_US + 3)
    for key in (
        item_keys.snapshot_source_key("src", "str", 3),
        item_keys.snapshot_stream_key("src", "str", 3),
    ):
        found = store.get_item(item_keys.SNAPSHOTS, key)
        assert found is not None
        assert msgspec.msgpack.decode(found, type=StoredSummary) == summary
    assert len(table(catalog)) == 3


def test_a_delete_removes_all_three_keys_and_a_missing_one_is_harmless(catalog: Catalog) -> None:
    apply(catalog, record(1), record(2))
    apply(catalog, delete(1), delete(99))
    assert versions(catalog) == [2]
    assert len(table(catalog)) == 3


def test_retention_keeps_the_highest_versions(catalog: Catalog) -> None:
    for version in range(5):
        apply(catalog, record(version))
    apply(catalog, record(5, keep_last=3))
    assert versions(catalog) == [3, 4, 5]
    assert len(table(catalog)) == 9


def test_retention_counts_versions_numerically_and_may_drop_the_record_itself(
    catalog: Catalog,
) -> None:
    apply(catalog, record(10), record(256))
    apply(catalog, record(2, keep_last=2))
    assert versions(catalog) == [10, 256]


def test_retention_sees_the_ops_before_it_in_the_same_entry(catalog: Catalog) -> None:
    apply(catalog, record(1))
    apply(catalog, record(2), record(3), delete(1), record(4, keep_last=2), record(0))
    assert versions(catalog) == [0, 3, 4]


def test_retention_touches_only_its_own_source_and_stream(catalog: Catalog) -> None:
    apply(catalog, record(1, source="a"), record(1, source="ab"), record(1, stream="x"))
    apply(catalog, record(2, source="a", keep_last=1))
    assert versions(catalog, "a") == [2]
    assert versions(catalog, "ab") == [1]
    assert versions(catalog, "src", "x") == [1]


def test_retention_pages_through_many_versions(catalog: Catalog) -> None:
    apply(catalog, *(record(v) for v in range(2_500)))
    apply(catalog, record(2_500, keep_last=2))
    assert versions(catalog) == [2_499, 2_500]


def test_replay_rebuilds_the_same_table() -> None:
    entries: list[list[LogOp]] = [
        [record(1), record(2, source="other")],
        [record(3, keep_last=2), delete(2, source="other")],
        [record(4), record(5, keep_last=1)],
    ]
    replicas = [memory_catalog(), memory_catalog()]
    for replica in replicas:
        create_store(replica)
        for ops in entries:
            apply(replica, *ops)
    assert table(replicas[0]) == table(replicas[1])
    assert versions(replicas[0]) == [5]


def test_ops_of_a_store_that_does_not_exist_are_skipped(catalog: Catalog) -> None:
    op = SnapshotOp("nowhere", "s", "t", 1, b"1", b"", "application/json", NOW_US)
    apply(catalog, op)
    assert not catalog.exists("nowhere")


@pytest.mark.parametrize(
    "key",
    [
        item_keys.snapshot_data_key("s\u00e9", "t-1", 7),
        item_keys.snapshot_source_key("s\u00e9", "t-1", 7),
        item_keys.snapshot_stream_key("s\u00e9", "t-1", 7),
    ],
)
def test_every_key_names_its_snapshot(key: bytes) -> None:
    assert item_keys.snapshot_of_key(key) == ("s\u00e9", "t-1", 7)


def test_keys_sort_by_id_then_version_and_an_id_does_not_prefix_another() -> None:
    keys = [
        item_keys.snapshot_source_key("a", "x", 256),
        item_keys.snapshot_source_key("ab", "x", 0),
        item_keys.snapshot_source_key("a", "x", 2),
        item_keys.snapshot_source_key("a", "xy", 1),
    ]
    assert [item_keys.snapshot_of_key(k) for k in sorted(keys)] == [
        ("a", "x", 2),
        ("a", "x", 256),
        ("a", "xy", 1),
        ("ab", "x", 0),
    ]
    assert not keys[1].startswith(item_keys.snapshot_source_prefix("a"))
