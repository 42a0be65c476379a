"""Entry point: `python -m esdb.services.projection`: the projections API on every node, and
the projections themselves beside the writer leader."""

from __future__ import annotations

import asyncio
import os

from esdb.contracts.log import LogOp
from esdb.contracts.subjects import PROJECTIONS_SERVICE
from esdb.services.projection.api import ProjectionApi
from esdb.services.projection.commits import WriterCommits
from esdb.services.projection.runner import Limits
from esdb.services.projection.service import ProjectionService
from esdb.shared.cluster_view import NatsClusterView
from esdb.shared.freshness import CatchUp
from esdb.shared.nats_connection import connect_service
from esdb.shared.service_api import NatsEndpoint, typed
from esdb.shared.service_runtime import run_service
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import NodeProgress, ReadOnlyStores
from esdb.shared.telemetry import Telemetry, connected
from esdb.shared.writer_ops import submit_ops

# Appends block their clients; projections may trail. Under CPU contention the append path
# goes first, as for the emitter.
PROJECTION_NICENESS = 5


async def serve(settings: Settings, stop: asyncio.Event, telemetry: Telemetry) -> None:
    """Composition root of a node's projection service."""
    os.nice(PROJECTION_NICENESS)
    nc = await connect_service(settings, f"esdb-projection-{settings.node_id}")
    telemetry.ready_when(connected(nc))
    stores = ReadOnlyStores(settings.data_dir)
    progress = NodeProgress(settings.data_dir)

    async def submit(ops: list[LogOp], timeout: float) -> None:
        await submit_ops(nc, ops, timeout)

    try:
        async with NatsClusterView(nc, settings.node_id, applied_on_disk=progress.applied) as view:
            api = ProjectionApi(stores.get, submit, CatchUp(view), timeout_ms=settings.timeout_ms)
            routes = {op: typed(kind, answer) for op, (kind, answer) in api.operations().items()}
            await NatsEndpoint(nc, PROJECTIONS_SERVICE, "projection").open(routes)
            service = ProjectionService(
                view,
                store_names=progress.stores,
                stores=stores.get,
                commit=WriterCommits(nc, settings.timeout_ms / 1000),
                limits=Limits(),
            )
            await service.run(stop)
            await nc.drain()
    finally:
        stores.close()
        progress.close()


def main() -> None:
    """Run the projection service until SIGINT/SIGTERM."""
    run_service("projection", serve)


if __name__ == "__main__":
    main()
