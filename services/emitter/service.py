"""The emitter's core: while this node's writer holds the lease, one `StoreFanout` per store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from esdb.contracts.errors import EsdbError
from esdb.contracts.log import CheckpointOp
from esdb.contracts.subjects import EMITTER_CHECKPOINT
from esdb.services.emitter.fanout import Publish, StoreFanout
from esdb.shared.cluster_view import ClusterView, follow_leader
from esdb.shared.storage.catalog import OpenSystem, read_checkpoint, registered_stores
from esdb.shared.storage.port import StoreReader
from esdb.shared.tasks import cancel_and_wait
from esdb.shared.writer_ops import LogOps

log = logging.getLogger(__name__)

STORE_SCAN_S = 0.25
"""How often the emitter looks for new stores (and restarts a failed fan-out) while it leads:
a read of this node's store list, no NATS."""


class Emitter:
    """Runs one `StoreFanout` per store while this node's writer holds the lease."""

    def __init__(
        self,
        view: ClusterView,
        stores: Callable[[str], StoreReader],
        system: OpenSystem,
        publish: Publish,
        flush: Callable[[], Awaitable[None]],
        log_ops: LogOps,
    ) -> None:
        self._view = view
        self._stores = stores
        self._system = system
        self._publish = publish
        self._flush = flush
        self._log_ops = log_ops
        self._running: dict[str, asyncio.Task[None]] = {}
        self._scanning: asyncio.Task[None] | None = None

    @property
    def stores(self) -> list[str]:
        """The stores being fanned out now."""
        return sorted(self._running)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the lease until `stop`: emit while this node's writer holds it."""
        await follow_leader(self._view, stop, start=self._start, end=self._end, serving=False)

    async def _start(self) -> None:
        # The writer's per-entry notices, only while emitting: a follower's would be wasted.
        await self._view.start_hearing()
        self._scanning = asyncio.create_task(self._scan())

    async def _end(self) -> None:
        log.info("not beside the leader any more; stopping fan-out")
        scanning, self._scanning = self._scanning, None
        await cancel_and_wait(scanning)
        await self._stop_all()
        await self._view.stop_hearing()

    async def _scan(self) -> None:
        while True:
            self._start_new_stores()
            await asyncio.sleep(STORE_SCAN_S)

    def _start_new_stores(self) -> None:
        with self._system() as system:
            if system is None:
                return
            names = registered_stores(system)
            checkpoints = {
                name: read_checkpoint(system, name, EMITTER_CHECKPOINT) for name in names
            }
        for gone in set(self._running) - set(names):
            log.info("store %r was removed; its fan-out stops", gone)
            self._running.pop(gone).cancel()
        for name in names:
            task = self._running.get(name)
            if task is not None and not task.done():
                continue
            if task is not None and task.exception() is not None:
                log.error("fan-out of %s failed: %s; restarting", name, task.exception())
            log.info("fan-out of store %r from position %d", name, checkpoints[name] + 1)
            fanout = StoreFanout(
                name,
                lambda name=name: self._stores(name),  # type: ignore[misc]
                self._publish,
                self._flush,
                lambda position, name=name: self._checkpoint(name, position),  # type: ignore[misc]
                after=checkpoints[name],
                wakeup=self._view.applied_ticket,
            )
            self._running[name] = asyncio.create_task(fanout.run())

    async def _checkpoint(self, store: str, position: int) -> None:
        try:
            await self._log_ops([CheckpointOp(store, EMITTER_CHECKPOINT, position)])
        except EsdbError as e:
            log.warning("checkpoint of %s at %d not recorded: %s", store, position, e)

    async def _stop_all(self) -> None:
        tasks, self._running = list(self._running.values()), {}
        await cancel_and_wait(*tasks)
