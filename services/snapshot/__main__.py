"""Entry point: `python -m esdb.services.snapshot`: the snapshot API over `service`."""

from __future__ import annotations

import asyncio

from esdb.contracts.log import LogOp
from esdb.contracts.subjects import SNAPSHOTS_SERVICE
from esdb.services.snapshot.service import SnapshotService
from esdb.shared.cluster_view import NatsClusterView
from esdb.shared.freshness import CatchUp
from esdb.shared.nats_connection import connect_service
from esdb.shared.service_api import NatsEndpoint, typed
from esdb.shared.service_runtime import run_service
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import NodeProgress, ReadOnlyStores
from esdb.shared.telemetry import Telemetry, connected
from esdb.shared.writer_ops import submit_ops


async def serve(settings: Settings, stop: asyncio.Event, telemetry: Telemetry) -> None:
    """Composition root: this node's stores, read after catching up with the log; writes
    through the writer leader."""
    nc = await connect_service(settings, f"esdb-snapshot-{settings.node_id}")
    telemetry.ready_when(connected(nc))
    stores = ReadOnlyStores(settings.data_dir)
    progress = NodeProgress(settings.data_dir)

    async def submit(ops: list[LogOp], timeout: float) -> None:
        await submit_ops(nc, ops, timeout)

    try:
        async with NatsClusterView(nc, settings.node_id, applied_on_disk=progress.applied) as view:
            service = SnapshotService(
                stores.get,
                submit,
                CatchUp(view),
                max_bytes=settings.max_event_bytes,
                timeout_ms=settings.timeout_ms,
            )
            routes = {
                op: typed(kind, answer) for op, (kind, answer) in service.operations().items()
            }
            await NatsEndpoint(nc, SNAPSHOTS_SERVICE, "snapshot").open(routes)
            await stop.wait()
            await nc.drain()  # stops taking requests, lets in-flight ones answer
    finally:
        stores.close()
        progress.close()


def main() -> None:
    """Run the snapshot service until SIGINT/SIGTERM."""
    run_service("snapshot", serve)


if __name__ == "__main__":
    main()
