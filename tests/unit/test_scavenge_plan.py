"""The scavenger's plan on a memory store: what it removes, in chunks, and applying it."""

from __future__ import annotations

from esdb.contracts.log import LogEntry, ScavengeOp, StreamMetaOp
from esdb.services.scavenger.plan import removals, report
from esdb.services.writer.apply import apply_entry
from esdb.shared.storage.catalog import Catalog
from esdb.shared.storage.records import STREAM_TOMBSTONED
from tests.builders import DEFAULT_STORE, NOW_US, append, plan_and_apply, write


def _apply(catalog: Catalog, *ops: ScavengeOp | StreamMetaOp) -> None:
    apply_entry(catalog, catalog.applied_sequence() + 1, LogEntry(ops=list(ops)))


def _seed(catalog: Catalog) -> None:
    plan_and_apply(catalog, write(append("keep-1", events=3)))
    plan_and_apply(catalog, write(append("count-1", events=5)))
    plan_and_apply(catalog, write(append("gone-1", events=4)))
    _apply(
        catalog,
        StreamMetaOp(DEFAULT_STORE, "count-1", "active", {"max_count": 2}),
        StreamMetaOp(DEFAULT_STORE, "gone-1", STREAM_TOMBSTONED, {}),
    )


def test_removes_what_reads_hide_and_nothing_else(catalog: Catalog) -> None:
    _seed(catalog)
    store = catalog.get(DEFAULT_STORE)

    done = list(removals(store, now_us=NOW_US, up_to_position=1_000))

    assert [(r.stream, r.below_version, r.events) for r in done] == [
        ("count-1", 3, 3),
        ("gone-1", 4, 4),
    ]
    summary = report(done, DEFAULT_STORE)
    assert (summary.streams, summary.events) == (2, 7) and summary.bytes > 7 * 16
    _apply(catalog, *(ScavengeOp(DEFAULT_STORE, r.stream, r.below_version) for r in done))
    remaining = store.read_all(1, backward=False, limit=100)[0]
    assert [(r.stream, r.version) for r in remaining] == [
        ("keep-1", 0),
        ("keep-1", 1),
        ("keep-1", 2),
        ("count-1", 3),
        ("count-1", 4),
    ]
    assert list(removals(store, now_us=NOW_US, up_to_position=1_000)) == []


def test_never_touches_events_the_emitter_has_not_published(catalog: Catalog) -> None:
    _seed(catalog)
    store = catalog.get(DEFAULT_STORE)

    done = list(removals(store, now_us=NOW_US, up_to_position=4))  # count-1 is at 4..8

    assert [(r.stream, r.below_version) for r in done] == [("count-1", 1)]


def test_large_removals_come_in_chunks(catalog: Catalog) -> None:
    plan_and_apply(catalog, write(append("big-1", events=25)))
    _apply(catalog, StreamMetaOp(DEFAULT_STORE, "big-1", "active", {"truncate_before": 23}))

    done = list(removals(catalog.get(DEFAULT_STORE), now_us=NOW_US, up_to_position=100, chunk=10))

    assert [(r.below_version, r.events) for r in done] == [(10, 10), (20, 10), (23, 3)]


def test_max_age_removes_the_events_older_than_it(catalog: Catalog) -> None:
    plan_and_apply(catalog, write(append("old-1", events=2)), now_us=NOW_US)
    plan_and_apply(catalog, write(append("old-1", events=1)), now_us=NOW_US + 10_000_000)
    _apply(catalog, StreamMetaOp(DEFAULT_STORE, "old-1", "active", {"max_age": 5}))

    done = list(
        removals(catalog.get(DEFAULT_STORE), now_us=NOW_US + 12_000_000, up_to_position=100)
    )

    assert [(r.below_version, r.events) for r in done] == [(2, 2)]
