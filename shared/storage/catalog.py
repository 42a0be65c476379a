"""The set of stores on a node plus the node's system store (applied log sequence, store list)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from esdb.contracts.errors import NotFound
from esdb.shared.storage.lmdb_store import DEFAULT_MAP_SIZE, LmdbStore, store_exists
from esdb.shared.storage.memory import MemoryStore
from esdb.shared.storage.port import Store, StoreReader
from esdb.shared.storage.records import StreamState

SYSTEM_STORE_DIR = "_system"
_STORE_PREFIX = "store:"
# The system store keeps small named records as stream states: stores, and the log hash.
_HASH_KEY = "log:hash"


def checkpoint_key(store: str, consumer: str) -> str:
    """Where the system store keeps a consumer's checkpoint."""
    return f"checkpoint:{store}/{consumer}"


def _checkpoint_keys(system: StoreReader, store: str) -> list[str]:
    """Every checkpoint key the system store holds for `store`."""
    prefix = checkpoint_key(store, "")
    return [key for key, _ in system.list_streams(prefix, 1 << 30) if key.startswith(prefix)]


def read_checkpoint(system: StoreReader, store: str, consumer: str) -> int:
    """The last position `consumer` checkpointed in `store` (0 when none)."""
    state = system.stream_state(checkpoint_key(store, consumer))
    return 0 if state is None else state.version


def store_config(system: StoreReader, name: str) -> dict[str, Any]:
    """A registered store's configuration; `NotFound` if there is no such store."""
    state = system.stream_state(_STORE_PREFIX + name)
    if state is None:
        raise NotFound(f"store {name!r} does not exist", field="store", store=name)
    return state.metadata


def registered_stores(system: StoreReader) -> list[str]:
    """Names of the stores a system store has registered."""
    found = system.list_streams(_STORE_PREFIX, 1 << 30)
    return [name[len(_STORE_PREFIX) :] for name, _ in found if name.startswith(_STORE_PREFIX)]


OpenSystem = Callable[[], AbstractContextManager[StoreReader | None]]
"""A node's system store, read-only, for the span of a `with` (None before it exists)."""


@contextmanager
def open_system(data_dir: Path) -> Iterator[StoreReader | None]:
    """A node's system store, read-only, for the span of a `with` (None before the writer
    created it)."""
    path = data_dir / SYSTEM_STORE_DIR
    if not store_exists(path):
        yield None
        return
    system = LmdbStore(path, readonly=True)
    try:
        yield system
    finally:
        system.close()


def applied_on_disk(data_dir: Path) -> int:
    """The log sequence a node's data directory reflects (0 when it has none)."""
    with open_system(data_dir) as system:
        return 0 if system is None else system.applied_sequence()


class NodeProgress:
    """The log sequence a node has applied, read from its system store (kept open, and
    reopened when a restored image replaced its files): for node-local services that ask
    often, and never open the system store otherwise. (LMDB forbids two environments on one
    file in a process: closing one drops the other's locks.)"""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / SYSTEM_STORE_DIR
        self._opened: tuple[int, LmdbStore] | None = None

    def applied(self) -> int:
        """The applied sequence (0 before the writer created the system store)."""
        system = self._system()
        return 0 if system is None else system.applied_sequence()

    def stores(self) -> list[str]:
        """Names of the stores the node has registered (none before the system store)."""
        system = self._system()
        return [] if system is None else registered_stores(system)

    def _system(self) -> LmdbStore | None:
        try:
            inode = (self._path / "data.mdb").stat().st_ino
        except FileNotFoundError:
            return None
        if self._opened is None or self._opened[0] != inode:
            self.close()
            self._opened = (inode, LmdbStore(self._path, readonly=True))
        return self._opened[1]

    def close(self) -> None:
        """Close the system store."""
        if self._opened is not None:
            self._opened[1].close()
            self._opened = None


class Catalog:
    """Opens stores by name; the system store records which stores exist and the sequence
    up to which every store has applied the log."""

    def __init__(
        self,
        open_store: Callable[[str], Store],
        system: Store,
        delete_store: Callable[[str], None] = lambda name: None,
    ) -> None:
        self._open_store = open_store
        self._delete_store = delete_store
        self._stores: dict[str, Store] = {}
        self.system = system

    def names(self) -> list[str]:
        """Names of the stores that exist."""
        return registered_stores(self.system)

    def exists(self, name: str) -> bool:
        """Whether a store was created."""
        return self.system.stream_state(_STORE_PREFIX + name) is not None

    def get(self, name: str) -> Store:
        """The named store; `NotFound` if it was never created."""
        store = self._stores.get(name)
        if store is None:
            if not self.exists(name):
                raise NotFound(f"store {name!r} does not exist", field="store", store=name)
            store = self._stores[name] = self._open_store(name)
        return store

    def config(self, name: str) -> dict[str, Any]:
        """A store's configuration; `NotFound` if it does not exist."""
        return store_config(self.system, name)

    def drop(self, name: str) -> None:
        """Close a store and delete its data; its registration goes in the next `record`."""
        store = self._stores.pop(name, None)
        if store is not None:
            store.close()
        self._delete_store(name)

    def applied_sequence(self) -> int:
        """The log sequence every store has applied."""
        return self.system.applied_sequence()

    def log_hash(self) -> bytes:
        """The running hash of every log entry applied (empty before the first)."""
        state = self.system.stream_state(_HASH_KEY)
        return b"" if state is None else bytes.fromhex(state.metadata["hash"])

    def record(
        self,
        sequence: int,
        created: list[str],
        log_hash: bytes | None = None,
        checkpoints: dict[tuple[str, str], int] | None = None,
        *,
        configs: dict[str, dict[str, Any]] | None = None,
        removed: list[str] | None = None,
    ) -> None:
        """Mark `sequence` applied to every store, registering the stores it created (with
        their `configs`) and forgetting those it `removed`, the consumer checkpoints it moved,
        and the running log hash after it."""
        configs = configs or {}
        removed = removed or []
        with self.system.transaction(sequence) as txn:
            for name in removed:
                txn.delete_stream_state(_STORE_PREFIX + name)
                # A store made again under this name starts with no consumer where it was.
                for key in _checkpoint_keys(self.system, name):
                    txn.delete_stream_state(key)
            for name in {*created, *configs}:
                txn.put_stream_state(
                    _STORE_PREFIX + name, StreamState(metadata=configs.get(name, {}))
                )
            for (store, consumer), position in (checkpoints or {}).items():
                if store not in removed:
                    txn.put_stream_state(checkpoint_key(store, consumer), StreamState(position))
            if log_hash is not None:
                txn.put_stream_state(
                    _HASH_KEY, StreamState(sequence, metadata={"hash": log_hash.hex()})
                )
        for name in created:
            self.get(name)  # creates its environment, so readers can open it

    def close(self) -> None:
        """Close every open store."""
        for store in self._stores.values():
            store.close()
        self.system.close()


def lmdb_catalog(data_dir: Path, *, map_size: int = DEFAULT_MAP_SIZE) -> Catalog:
    """A writable catalog of LMDB stores under `data_dir`."""
    return Catalog(
        lambda name: LmdbStore(data_dir / name, map_size=map_size),
        LmdbStore(data_dir / SYSTEM_STORE_DIR, map_size=map_size),
        lambda name: shutil.rmtree(data_dir / name, ignore_errors=True),
    )


def memory_catalog() -> Catalog:
    """An in-memory catalog for unit tests."""
    return Catalog(lambda name: MemoryStore(), MemoryStore())


class ReadOnlyStores:
    """Read-only views of a node's LMDB stores, opened lazily, for readers."""

    def __init__(self, data_dir: Path, *, map_size: int = DEFAULT_MAP_SIZE) -> None:
        self._data_dir = data_dir
        self._map_size = map_size
        self._open: dict[str, tuple[int, LmdbStore]] = {}
        # Each data file's path as text: every request checks the file's inode, and a
        # pathlib stat cost it 2-3 µs of the reader's ~150 per small read.
        self._data_files: dict[str, str] = {}

    def get(self, name: str) -> StoreReader:
        """The named store; `NotFound` until the writer has created it. A store whose files
        were replaced (an image restored under us) is reopened."""
        data_file = self._data_files.get(name) or str(self._data_dir / name / "data.mdb")
        try:
            inode = os.stat(data_file).st_ino
            self._data_files[name] = data_file  # only stores that exist: names are the client's
        except FileNotFoundError:
            inode = None
        opened = self._open.get(name)
        if opened is not None and opened[0] == inode:
            return opened[1]
        if opened is not None:
            opened[1].close()
            del self._open[name]
        if name.startswith("_") or inode is None:
            raise NotFound(f"store {name!r} does not exist", field="store", store=name)
        store = LmdbStore(self._data_dir / name, readonly=True, map_size=self._map_size)
        self._open[name] = (inode, store)
        return store

    def size_bytes(self, name: str) -> int:
        """The size of a store's data file on this node."""
        try:
            return (self._data_dir / name / "data.mdb").stat().st_size
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        """Close every open store."""
        for _, store in self._open.values():
            store.close()
