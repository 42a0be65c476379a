"""DCB on LMDB stores: tags, the DCB index, conditions in the leader's planning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from esdb.shared.storage.catalog import Catalog, lmdb_catalog
from tests.builders import create_store
from tests.dcb_contract import DcbContract

MAP_SIZE = 64 << 20


class TestLmdbDcb(DcbContract):
    @pytest.fixture
    def catalog(self, tmp_path: Path) -> Iterator[Catalog]:
        catalog = lmdb_catalog(tmp_path, map_size=MAP_SIZE)
        create_store(catalog)
        yield catalog
        catalog.close()
