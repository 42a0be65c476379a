"""Fixtures shared by every test tier."""

from __future__ import annotations

import pytest

from esdb.shared.storage.catalog import Catalog, memory_catalog
from tests.builders import create_store


@pytest.fixture
def catalog() -> Catalog:
    """An in-memory catalog whose default store was created by log entry 1."""
    catalog = memory_catalog()
    create_store(catalog)
    return catalog
