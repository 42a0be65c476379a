"""The scavenger's core: plan removals over this node's stores and log each through the
writer, beside the writer leader only."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from esdb.contracts.api import ScavengeReport, ScavengeRequest
from esdb.contracts.errors import EsdbError
from esdb.contracts.log import ScavengeOp
from esdb.contracts.subjects import EMITTER_CHECKPOINT, Op
from esdb.services.scavenger.plan import removals, report
from esdb.shared.cluster_view import ClusterView, follow_leader
from esdb.shared.service_api import Endpoint, typed
from esdb.shared.storage.catalog import OpenSystem, read_checkpoint, registered_stores
from esdb.shared.storage.port import StoreReader
from esdb.shared.tasks import cancel_and_wait
from esdb.shared.wire import Codec
from esdb.shared.writer_ops import LogOps

log = logging.getLogger(__name__)


def _now_us() -> int:
    return time.time_ns() // 1000


class Scavenger:
    """Scavenges one store at a time, each removal its own log entry."""

    def __init__(
        self,
        stores: Callable[[str], StoreReader],
        system: OpenSystem,
        log_ops: LogOps,
        *,
        now_us: Callable[[], int] = _now_us,
    ) -> None:
        self._stores = stores
        self._system = system
        self._log_ops = log_ops
        self._now_us = now_us
        self._lock = asyncio.Lock()

    async def scavenge(self, store: str) -> ScavengeReport:
        """Remove what no read of `store` returns any more; what was removed."""
        async with self._lock:
            reader = self._stores(store)
            with self._system() as system:
                published = (
                    0 if system is None else read_checkpoint(system, store, EMITTER_CHECKPOINT)
                )
            done = []
            now_us = self._now_us()
            for removal in removals(reader, now_us=now_us, up_to_position=published):
                await self._log_ops([ScavengeOp(store, removal.stream, removal.below_version)])
                done.append(removal)
            result = report(done, store)
            if result.events:
                log.info(
                    "scavenged %s: %d events (%d bytes) of %d streams",
                    store,
                    result.events,
                    result.bytes,
                    result.streams,
                )
            return result

    async def scavenge_all(self) -> None:
        """One background pass over every store; a failed store is retried next pass."""
        with self._system() as system:
            names = [] if system is None else registered_stores(system)
        for name in names:
            try:
                await self.scavenge(name)
            except EsdbError as e:
                log.warning("scavenge of %s stopped: %s", name, e)

    async def on_request(
        self, store: str, request: ScavengeRequest, codec: Codec
    ) -> ScavengeReport:
        """`esdb.api.<store>.scavenge`, forwarded by the gateway."""
        return await self.scavenge(store)


class ScavengerService:
    """While this node's writer leads: answers `scavenge` and scavenges every store every
    `interval_s` seconds (0: only on request)."""

    def __init__(
        self,
        view: ClusterView,
        scavenger: Scavenger,
        endpoint: Endpoint,
        *,
        interval_s: float,
    ) -> None:
        self._view = view
        self._scavenger = scavenger
        self._endpoint = endpoint
        self._interval_s = interval_s
        self._background: asyncio.Task[None] | None = None
        self.active = False

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the leader until `stop`."""
        await follow_leader(self._view, stop, start=self._start, end=self._end, serving=True)

    async def _start(self) -> None:
        await self._endpoint.open({Op.SCAVENGE: typed(ScavengeRequest, self._scavenger.on_request)})
        if self._interval_s:
            self._background = asyncio.create_task(self._every())
        self.active = True

    async def _end(self) -> None:
        self.active = False
        await self._endpoint.close()
        background, self._background = self._background, None
        await cancel_and_wait(background)

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self._scavenger.scavenge_all()
