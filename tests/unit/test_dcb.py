"""DCB on the in-memory store: tags, the DCB index, conditions in the leader's planning."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from esdb.contracts.commands import DcbItem, DcbReadQuery
from esdb.services.reader.dcb_reads import dcb_read
from esdb.shared.storage.catalog import Catalog, memory_catalog
from tests.builders import DEFAULT_STORE, create_store
from tests.dcb_contract import DcbContract, DcbModelContract, append_dcb, dcb_event


class TestMemoryDcb(DcbContract):
    @pytest.fixture
    def catalog(self) -> Catalog:
        catalog = memory_catalog()
        create_store(catalog)
        return catalog


class TestMemoryDcbModel(DcbModelContract):
    @contextmanager
    def fresh_catalog(self) -> Iterator[Catalog]:
        catalog = memory_catalog()
        create_store(catalog)
        yield catalog


def _query(limit: int) -> DcbReadQuery:
    return DcbReadQuery(
        store=DEFAULT_STORE,
        items=(DcbItem(tags=("t",)),),
        after=None,
        backward=False,
        limit=limit,
        min_position=None,
        wait_ms=0,
        codec="msgpack",
    )


def test_a_page_cut_to_fit_its_reply_says_more_follow(catalog: Catalog) -> None:
    for _ in range(3):
        append_dcb(catalog, dcb_event("T", "t"))
    store = catalog.get(DEFAULT_STORE)
    whole = dcb_read(store, _query(10))
    assert ([e.position for e in whole.events], whole.head, whole.more) == ([1, 2, 3], 3, False)
    full = dcb_read(store, _query(3))
    assert (len(full.events), full.more) == (3, True)
    cut = dcb_read(store, _query(10), max_bytes=1)  # room for one event only
    assert ([e.position for e in cut.events], cut.more) == ([1], True)
