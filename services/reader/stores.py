"""`store_list`, `store_status` and `store_config` from a node's system store."""

from __future__ import annotations

import msgspec

from esdb.contracts.api import StoreConfig, StoreInfo, StoreList
from esdb.contracts.commands import StoreQuery
from esdb.shared.storage.catalog import ReadOnlyStores, registered_stores, store_config
from esdb.shared.storage.port import StoreReader


def store_list(system: StoreReader, stores: ReadOnlyStores, query: StoreQuery) -> StoreList:
    """Every store with its config."""
    return StoreList(stores=[_info(system, name) for name in sorted(registered_stores(system))])


def store_status(system: StoreReader, stores: ReadOnlyStores, query: StoreQuery) -> StoreInfo:
    """One store's config and what this node holds of it."""
    name = query.store or ""
    info = _info(system, name)
    reader = stores.get(name)
    info.last_position = reader.last_position()
    info.applied_sequence = reader.applied_sequence()
    info.size_bytes = stores.size_bytes(name)
    return info


def store_config_of(system: StoreReader, stores: ReadOnlyStores, query: StoreQuery) -> StoreInfo:
    """One store's config."""
    return _info(system, query.store or "")


def _info(system: StoreReader, name: str) -> StoreInfo:
    config = msgspec.convert(store_config(system, name), StoreConfig)
    return StoreInfo(store=name, config=config)
