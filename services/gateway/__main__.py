"""Entry point: `python -m esdb.services.gateway`."""

from __future__ import annotations

import asyncio

from esdb.contracts.subjects import API_PREFIX, GATEWAY_QUEUE
from esdb.services.gateway.handlers import Gateway
from esdb.shared.nats_connection import connect_service
from esdb.shared.service_runtime import run_service
from esdb.shared.settings import Settings
from esdb.shared.telemetry import Telemetry


async def serve(settings: Settings, stop: asyncio.Event, telemetry: Telemetry) -> None:
    """Composition root of a gateway: serve the public API until `stop`, then drain."""
    nc = await connect_service(settings, "esdb-gateway")
    gateway = Gateway(nc, settings, telemetry)
    telemetry.ready_when(gateway.not_ready)
    await nc.subscribe(
        f"{API_PREFIX}.>",
        queue=GATEWAY_QUEUE,
        cb=gateway.on_request,
        pending_msgs_limit=65536,
    )
    await gateway.orphans.start()
    following = asyncio.create_task(gateway.follow_leader())
    await stop.wait()
    following.cancel()
    await nc.drain()  # stops taking requests, lets in-flight ones answer


def main() -> None:
    """Run the gateway until SIGINT/SIGTERM."""
    run_service("gateway", serve)


if __name__ == "__main__":
    main()
