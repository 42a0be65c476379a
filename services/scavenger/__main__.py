"""Entry point: `python -m esdb.services.scavenger`: beside the writer leader, remove the events
no read can return (truncated, expired, deleted) in small log entries, in the background and
on request (`esdb.api.<store>.scavenge`)."""

from __future__ import annotations

import asyncio
import os
from functools import partial

from esdb.contracts.subjects import SCAVENGER_SERVICE
from esdb.services.scavenger.service import Scavenger, ScavengerService
from esdb.shared.cluster_view import NatsClusterView
from esdb.shared.nats_connection import connect_service
from esdb.shared.service_api import NatsEndpoint
from esdb.shared.service_runtime import run_service
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import ReadOnlyStores, open_system
from esdb.shared.telemetry import Telemetry, connected
from esdb.shared.writer_ops import submit_ops

# Background work: appends and reads go first when the CPU is contended.
SCAVENGER_NICENESS = 10


async def serve(settings: Settings, stop: asyncio.Event, telemetry: Telemetry) -> None:
    """Composition root: scavenge while this node leads."""
    os.nice(SCAVENGER_NICENESS)
    nc = await connect_service(settings, f"esdb-scavenger-{settings.node_id}")
    telemetry.ready_when(connected(nc))
    stores = ReadOnlyStores(settings.data_dir)
    scavenger = Scavenger(
        stores.get, partial(open_system, settings.data_dir), partial(submit_ops, nc)
    )
    try:
        async with NatsClusterView(nc, settings.node_id) as view:
            service = ScavengerService(
                view,
                scavenger,
                NatsEndpoint(nc, SCAVENGER_SERVICE, "scavenger"),
                interval_s=settings.scavenge_interval_s,
            )
            await service.run(stop)
    finally:
        await nc.drain()
        stores.close()


def main() -> None:
    """Run the scavenger until SIGINT/SIGTERM."""
    run_service("scavenger", serve)


if __name__ == "__main__":
    main()
