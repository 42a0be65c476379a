"""Entry point: `python -m esdb.services.emitter`: fan-out beside the writer leader only."""

from __future__ import annotations

import asyncio
import os
from functools import partial

from esdb.services.emitter.fanout import LogFanout
from esdb.services.emitter.nats_ports import FramePublisher, log_tail
from esdb.services.emitter.service import Emitter
from esdb.shared.cluster_view import NatsClusterView
from esdb.shared.nats_connection import connect_service
from esdb.shared.service_runtime import run_service
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import ReadOnlyStores, open_system
from esdb.shared.telemetry import Telemetry, connected
from esdb.shared.writer_ops import submit_ops

# Appends block their clients; fan-out is asynchronous and may trail by milliseconds. When the
# CPU is contended the append path goes first (CFS weight 335 against 1024, not starvation).
EMITTER_NICENESS = 5


async def serve(settings: Settings, stop: asyncio.Event, telemetry: Telemetry) -> None:
    """Composition root of an emitter."""
    os.nice(EMITTER_NICENESS)
    nc = await connect_service(settings, f"esdb-emitter-{settings.node_id}")
    telemetry.ready_when(connected(nc))
    stores = ReadOnlyStores(settings.data_dir)
    fanout = partial(
        LogFanout,
        system=partial(open_system, settings.data_dir),
        stores=stores.get,
        tail=partial(log_tail, nc.jetstream(timeout=settings.timeout_ms / 1000)),
        send=FramePublisher(nc).send,
        flush=nc.flush,
        log_ops=partial(submit_ops, nc),
        max_payload=nc.max_payload,
    )
    try:
        async with NatsClusterView(nc, settings.node_id) as view:
            await Emitter(view, fanout).run(stop)
    finally:
        await nc.drain()
        stores.close()


def main() -> None:
    """Run the emitter until SIGINT/SIGTERM."""
    run_service("emitter", serve)


if __name__ == "__main__":
    main()
