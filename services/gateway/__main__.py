"""Entry point: `python -m esdb.services.gateway`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient

from esdb.contracts.subjects import API_PREFIX, GATEWAY_QUEUE, WRITE_PREFIX
from esdb.services.gateway.cluster_admin import ClusterAdmin
from esdb.services.gateway.coalescer import WriteCoalescer
from esdb.services.gateway.handlers import GatewayHandlers, nats_ask, nats_publish
from esdb.services.gateway.orphans import ORPHAN_QUEUE, OrphanWatch
from esdb.services.gateway.service import STATUS_WINDOW_S, GatewayService
from esdb.shared.cluster_view import ClusterView, NatsClusterView
from esdb.shared.nats_connection import connect_service
from esdb.shared.service_runtime import run_service
from esdb.shared.settings import Settings
from esdb.shared.telemetry import Telemetry, nats_problem

PENDING_LIMIT = 65536


@dataclass
class Gateway:
    """A gateway wired to NATS: its core, the writes it keeps for a lost leader, and the task
    that follows the leader."""

    core: GatewayService
    orphans: OrphanWatch
    following: asyncio.Task[None]


async def start_gateway(
    nc: NatsClient, settings: Settings, telemetry: Telemetry, view: ClusterView
) -> Gateway:
    """Wire a gateway over `nc` and `view`, and take requests."""
    ask = nats_ask(nc)
    orphans = OrphanWatch(nats_publish(nc), settings)
    writes = WriteCoalescer(ask, tracer=telemetry.tracer)
    cluster = ClusterAdmin(nc, settings, lambda: view.node_statuses(STATUS_WINDOW_S))
    core = GatewayService(settings, view, ask, writes, orphans, cluster.handlers)
    handlers = GatewayHandlers(nc, core, orphans, telemetry)

    async def not_ready() -> str | None:
        return nats_problem(nc) or await core.not_ready()

    telemetry.ready_when(not_ready)
    await nc.subscribe(
        f"{API_PREFIX}.>",
        queue=GATEWAY_QUEUE,
        cb=handlers.on_request,
        pending_msgs_limit=PENDING_LIMIT,
    )
    # A copy of every write the servers route to the leader: one gateway per write.
    await nc.subscribe(
        f"{WRITE_PREFIX}.>",
        queue=ORPHAN_QUEUE,
        cb=handlers.on_write_copy,
        pending_msgs_limit=PENDING_LIMIT,
    )
    return Gateway(core, orphans, asyncio.create_task(core.follow_leader()))


async def serve(settings: Settings, stop: asyncio.Event, telemetry: Telemetry) -> None:
    """Composition root of a gateway: serve the public API until `stop`, then drain."""
    nc = await connect_service(settings, "esdb-gateway")
    async with NatsClusterView(nc, None) as view:
        gateway = await start_gateway(nc, settings, telemetry, view)
        await stop.wait()
        gateway.following.cancel()
        await nc.drain()  # stops taking requests, lets in-flight ones answer


def main() -> None:
    """Run the gateway until SIGINT/SIGTERM."""
    run_service("gateway", serve)


if __name__ == "__main__":
    main()
