"""Read-your-writes on any node: before answering, wait until this node has applied the log as
it stood when the request arrived (its last sequence, asked of JetStream through the cluster
view)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from esdb.contracts.errors import Timeout
from esdb.shared.cluster_view import ClusterView
from esdb.shared.storage.catalog import SYSTEM_STORE_DIR
from esdb.shared.storage.lmdb_store import LmdbStore


class NodeProgress:
    """The log sequence this node has applied, read from its system store (kept open, and
    reopened when a restored image replaced its files)."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / SYSTEM_STORE_DIR
        self._opened: tuple[int, LmdbStore] | None = None

    def applied(self) -> int:
        """The applied sequence (0 before the writer created the system store)."""
        try:
            inode = (self._path / "data.mdb").stat().st_ino
        except FileNotFoundError:
            return 0
        if self._opened is None or self._opened[0] != inode:
            self.close()
            self._opened = (inode, LmdbStore(self._path, readonly=True))
        return self._opened[1].applied_sequence()

    def close(self) -> None:
        """Close the system store."""
        if self._opened is not None:
            self._opened[1].close()
            self._opened = None


class CatchUp:
    """Waits until this node has applied every entry committed before the call began."""

    def __init__(self, view: ClusterView) -> None:
        self._view = view

    async def __call__(self, timeout_s: float) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                target = (await self._view.log_state()).last_sequence
        except TimeoutError as e:
            raise Timeout("the replicated log's state did not come in time") from e
        await self._view.wait_applied(target, max(0.0, timeout_s - (time.monotonic() - started)))
