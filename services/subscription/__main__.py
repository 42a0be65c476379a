"""Entry point: `python -m esdb.services.subscription`: active beside the writer leader only."""

from __future__ import annotations

import asyncio
from functools import partial

from esdb.contracts.subjects import SUBSCRIPTIONS_SERVICE
from esdb.services.subscription.service import SubscriptionService
from esdb.shared.cluster_view import NatsClusterView
from esdb.shared.metrics import SubscriptionLevels
from esdb.shared.nats_connection import connect_service
from esdb.shared.service_api import NatsEndpoint
from esdb.shared.service_runtime import run_service
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import ReadOnlyStores, open_system
from esdb.shared.telemetry import Telemetry, connected
from esdb.shared.writer_ops import submit_ops


async def serve(settings: Settings, stop: asyncio.Event, telemetry: Telemetry) -> None:
    """Composition root: serve and deliver while this node's writer leads."""
    nc = await connect_service(settings, f"esdb-subscription-{settings.node_id}")
    telemetry.ready_when(connected(nc))
    stores = ReadOnlyStores(settings.data_dir)

    async def publish(subject: str, payload: bytes, headers: dict[str, str], reply: str) -> None:
        await nc.publish(subject, payload, reply=reply, headers=headers)

    try:
        async with NatsClusterView(nc, settings.node_id) as view:
            service = SubscriptionService(
                view,
                stores.get,
                partial(open_system, settings.data_dir),
                NatsEndpoint(nc, SUBSCRIPTIONS_SERVICE, "subscription"),
                publish,
                partial(submit_ops, nc),
            )
            SubscriptionLevels(telemetry.registry, service.levels)
            await service.run(stop)
    finally:
        await nc.drain()
        stores.close()


def main() -> None:
    """Run the subscription service until SIGINT/SIGTERM."""
    run_service("subscription", serve)


if __name__ == "__main__":
    main()
