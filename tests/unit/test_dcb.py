"""DCB on the in-memory store: tags, the DCB index, conditions in the leader's planning."""

from __future__ import annotations

import pytest

from esdb.shared.storage.catalog import Catalog, memory_catalog
from tests.builders import create_store
from tests.dcb_contract import DcbContract


class TestMemoryDcb(DcbContract):
    @pytest.fixture
    def catalog(self) -> Catalog:
        catalog = memory_catalog()
        create_store(catalog)
        return catalog
