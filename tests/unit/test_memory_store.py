"""The in-memory store passes the storage contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from esdb.shared.storage.memory import MemoryStore
from tests.store_contract import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        store = MemoryStore()
        yield store
        store.close()
