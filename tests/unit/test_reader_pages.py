"""The reader cuts a page where its reply would be full and points the cursor after the last
item kept, in both directions, so paging on returns every visible item exactly once."""

from __future__ import annotations

import msgspec
import pytest

from esdb.contracts.api import ReadAllResult
from esdb.contracts.commands import ListQuery, StreamQuery
from esdb.services.reader import queries
from esdb.services.reader.reply_size import event_bytes, stream_bytes
from esdb.shared.storage.catalog import Catalog
from esdb.shared.storage.records import StreamState
from esdb.shared.wire import Codec, encode
from tests.builders import DEFAULT_STORE, all_query, commit

STREAM = "order-1"


def _stream_query(start: int | None, backward: bool) -> StreamQuery:
    return StreamQuery(
        store=DEFAULT_STORE,
        stream=STREAM,
        from_version=start,
        backward=backward,
        limit=100,
        min_position=None,
        wait_ms=0,
        codec="json",
    )


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("truncate_before", [0, 4])
def test_a_stream_pages_through_cuts_without_gaps_or_repeats(
    catalog: Catalog, backward: bool, truncate_before: int
) -> None:
    store = catalog.get(DEFAULT_STORE)
    written = commit(store, 2, [(STREAM, "T")] * 10)
    with store.transaction(3) as txn:
        txn.put_stream_state(STREAM, StreamState(9, metadata={"truncate_before": truncate_before}))
    budget = event_bytes(written[0]) * 3  # three events a page
    seen: list[int] = []
    start: int | None = None if backward else 0
    while True:
        page = queries.read_stream(store, _stream_query(start, backward), max_bytes=budget)
        seen.extend(e.version for e in page.events)
        # Never an empty page, not even one of hidden events after the last visible one.
        assert 1 <= len(page.events) <= 3
        if page.next is None:
            break
        start = page.next
    visible = list(range(truncate_before, 10))
    assert seen == (visible[::-1] if backward else visible)


@pytest.mark.parametrize("backward", [False, True])
def test_all_pages_through_cuts(catalog: Catalog, backward: bool) -> None:
    store = catalog.get(DEFAULT_STORE)
    written = commit(store, 2, [(f"s-{n % 3}", "T") for n in range(10)])
    budget = event_bytes(written[0]) * 4
    seen: list[int] = []
    start: int | None = None if backward else 1  # None: from the end
    while True:
        page = queries.read_all(store, all_query(start, backward=backward), max_bytes=budget)
        assert 1 <= len(page.events) <= 4
        seen.extend(e.position for e in page.events)
        if page.next_position is None:
            break
        start = page.next_position
    assert seen == (list(range(10, 0, -1)) if backward else list(range(1, 11)))


def test_streams_list_through_cuts(catalog: Catalog) -> None:
    store = catalog.get(DEFAULT_STORE)
    commit(store, 2, [(f"s-{n}", "T") for n in range(7)])
    budget = stream_bytes(("s-0", StreamState(0))) * 2
    listed: list[str] = []
    after: str | None = None
    while True:
        page = queries.list_streams(
            store, ListQuery(store=DEFAULT_STORE, after=after, limit=100, codec="json"), budget
        )
        assert 1 <= len(page.streams) <= 2
        listed.extend(s.stream for s in page.streams)
        if page.next is None:
            break
        after = page.next
    assert listed == [f"s-{n}" for n in range(7)]


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_compact_pages_are_cut_to_their_exact_size(
    catalog: Catalog, backward: bool, codec: str
) -> None:
    store = catalog.get(DEFAULT_STORE)
    written = commit(store, 2, [(f"s-{n % 3}", "T") for n in range(10)])
    encoder = msgspec.msgpack if codec == "msgpack" else msgspec.json
    budget = len(encoder.encode(written[:3])) + 2  # three records' worth, exactly
    seen: list[int] = []
    start: int | None = None if backward else 1
    while True:
        query = all_query(start, backward=backward, codec=codec)
        page = queries.read_all(store, queries.Compact(query), max_bytes=budget)
        reply = encoder.decode(encode(page, Codec(codec)), type=ReadAllResult)
        assert reply.records is not None and reply.events == []
        # Cut by the estimate when over: at least one record, and never more than fit.
        assert 1 <= len(reply.records) <= 3
        seen.extend(r.position for r in reply.records)
        if page.next_position is None:
            break
        start = page.next_position
    assert seen == (list(range(10, 0, -1)) if backward else list(range(1, 11)))
