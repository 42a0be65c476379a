"""Entry point: `python -m esdb.services.subscription`: active beside the writer leader only."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from esdb.services.subscription.service import SubscriptionService
from esdb.shared.leadership import leading_ticks, writer_leads
from esdb.shared.metrics import SubscriptionLevels
from esdb.shared.nats_connection import connect_service
from esdb.shared.service_runtime import run_service
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import ReadOnlyStores, open_system
from esdb.shared.telemetry import Telemetry, connected
from esdb.shared.wakeup import Wakeup

log = logging.getLogger(__name__)


async def serve(settings: Settings, stop: asyncio.Event, telemetry: Telemetry) -> None:
    """Composition root: follow the lease; serve and deliver while this node leads."""
    nc = await connect_service(settings, f"esdb-subscription-{settings.node_id}")
    telemetry.ready_when(connected(nc))
    stores = ReadOnlyStores(settings.data_dir)
    wakeup = Wakeup()
    service = SubscriptionService(
        nc, settings.node_id, stores, partial(open_system, settings.data_dir), wakeup
    )
    SubscriptionLevels(telemetry.registry, service.levels)
    try:
        async for leading in leading_ticks(nc, settings.node_id, stop):
            if leading and not service.active and await writer_leads(nc, settings.node_id):
                log.info("beside the leader: serving subscriptions")
                await service.activate()
            elif not leading and service.active:
                log.info("not beside the leader any more: handing subscriptions over")
                await service.deactivate()
            await service.refresh_notices()  # watches expire, groups come and go
    finally:
        await service.deactivate()
        await nc.drain()
        stores.close()


def main() -> None:
    """Run the subscription service until SIGINT/SIGTERM."""
    run_service("subscription", serve)


if __name__ == "__main__":
    main()
