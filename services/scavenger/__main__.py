"""Entry point: `python -m esdb.services.scavenger`: beside the writer leader, remove the events
no read can return (truncated, expired, deleted) in small log entries, in the background and
on request (`esdb.api.<store>.scavenge`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription

from esdb.contracts.api import ScavengeReport, ScavengeRequest
from esdb.contracts.errors import EsdbError
from esdb.contracts.log import ScavengeOp
from esdb.contracts.subjects import (
    EMITTER_CHECKPOINT,
    SCAVENGER_SERVICE,
    Op,
    service_queue,
    service_subject,
)
from esdb.services.scavenger.plan import removals, report
from esdb.shared.leadership import leading_ticks, writer_leads
from esdb.shared.nats_connection import concurrently, connect_service
from esdb.shared.service_api import api_handler, typed
from esdb.shared.service_runtime import run_service
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import (
    ReadOnlyStores,
    open_system,
    read_checkpoint,
    registered_stores,
)
from esdb.shared.telemetry import Telemetry, connected
from esdb.shared.wire import Codec
from esdb.shared.writer_ops import submit_ops

log = logging.getLogger(__name__)
# Background work: appends and reads go first when the CPU is contended.
SCAVENGER_NICENESS = 10


class Scavenger:
    """Scavenges one store at a time, each removal its own log entry."""

    def __init__(self, nc: NatsClient, settings: Settings, stores: ReadOnlyStores) -> None:
        self._nc = nc
        self._settings = settings
        self._stores = stores
        self._lock = asyncio.Lock()

    async def scavenge(self, store: str) -> ScavengeReport:
        """Remove what no read of `store` returns any more; what was removed."""
        async with self._lock:
            reader = self._stores.get(store)
            with open_system(self._settings.data_dir) as system:
                published = (
                    0 if system is None else read_checkpoint(system, store, EMITTER_CHECKPOINT)
                )
            done = []
            now_us = time.time_ns() // 1000
            for removal in removals(reader, now_us=now_us, up_to_position=published):
                await submit_ops(
                    self._nc, [ScavengeOp(store, removal.stream, removal.below_version)]
                )
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
        with open_system(self._settings.data_dir) as system:
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


async def serve(settings: Settings, stop: asyncio.Event, telemetry: Telemetry) -> None:
    """Composition root: scavenge while this node leads."""
    os.nice(SCAVENGER_NICENESS)
    nc = await connect_service(settings, f"esdb-scavenger-{settings.node_id}")
    telemetry.ready_when(connected(nc))
    stores = ReadOnlyStores(settings.data_dir)
    scavenger = Scavenger(nc, settings, stores)
    serving: Subscription | None = None
    background: asyncio.Task[None] | None = None
    try:
        async for leading in leading_ticks(nc, settings.node_id, stop):
            if leading and serving is None and await writer_leads(nc, settings.node_id):
                serving = await nc.subscribe(
                    service_subject(SCAVENGER_SERVICE, "*", Op.SCAVENGE),
                    queue=service_queue(SCAVENGER_SERVICE),
                    cb=concurrently(
                        api_handler(
                            "scavenger", {Op.SCAVENGE: typed(ScavengeRequest, scavenger.on_request)}
                        )
                    ),
                )
                if settings.scavenge_interval_s:
                    background = asyncio.create_task(_every(settings, scavenger))
            elif not leading and serving is not None:
                await serving.unsubscribe()
                serving = None
                if background is not None:
                    background.cancel()
                    background = None
    finally:
        if background is not None:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
        await nc.drain()
        stores.close()


async def _every(settings: Settings, scavenger: Scavenger) -> None:
    while True:
        await asyncio.sleep(settings.scavenge_interval_s)
        await scavenger.scavenge_all()


def main() -> None:
    """Run the scavenger until SIGINT/SIGTERM."""
    run_service("scavenger", serve)


if __name__ == "__main__":
    main()
