"""Entry point: `python -m esdb.services.snapshot`: thin NATS handlers over `service`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from esdb.contracts.log import LogOp
from esdb.contracts.subjects import (
    SNAPSHOTS_SERVICE,
    node_applied_subject,
    service_queue,
    service_subject,
)
from esdb.services.snapshot.freshness import CatchUp, NodeProgress, jetstream_log_end
from esdb.services.snapshot.service import SnapshotService
from esdb.shared.nats_connection import concurrently, connect_service
from esdb.shared.service_api import api_handler, typed
from esdb.shared.service_runtime import run_service
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import ReadOnlyStores
from esdb.shared.telemetry import Telemetry, connected
from esdb.shared.writer_ops import submit_ops

log = logging.getLogger(__name__)


def handler(service: SnapshotService) -> Callable[[Msg], Coroutine[Any, Any, None]]:
    """Decode `esdb.internal.snapshots.<store>.<operation>`, answer, encode in its codec."""
    routes = {op: typed(type_, answer) for op, (type_, answer) in service.operations().items()}
    return api_handler("snapshot", routes)


async def serve(settings: Settings, stop: asyncio.Event, telemetry: Telemetry) -> None:
    """Composition root: this node's stores, read after catching up with the log; writes
    through the writer leader."""
    nc = await connect_service(settings, f"esdb-snapshot-{settings.node_id}")
    telemetry.ready_when(connected(nc))
    stores = ReadOnlyStores(settings.data_dir)
    progress = NodeProgress(settings.data_dir)
    notices = AppliedNotices(nc, settings.node_id, progress)

    async def submit(ops: list[LogOp], timeout: float) -> None:
        await submit_ops(nc, ops, timeout)

    service = SnapshotService(
        stores.get,
        submit,
        CatchUp(jetstream_log_end(nc.jetstream()), notices.wait_applied),
        max_bytes=settings.max_event_bytes,
        timeout_ms=settings.timeout_ms,
    )
    try:
        await nc.subscribe(
            service_subject(SNAPSHOTS_SERVICE, "*", "*"),
            queue=service_queue(SNAPSHOTS_SERVICE),
            cb=concurrently(handler(service)),
        )
        await stop.wait()
        await nc.drain()
    finally:
        stores.close()
        progress.close()


class AppliedNotices:
    """Listens to the writer's per-entry notices only while a request waits for this node to
    catch up (rarely: it usually has), so an idle service costs nothing per append."""

    def __init__(self, nc: NatsClient, node_id: str, progress: NodeProgress) -> None:
        self._nc = nc
        self._subject = node_applied_subject(node_id)
        self._progress = progress
        self._waiting = 0
        self._subscription: Subscription | None = None

    async def wait_applied(self, sequence: int, timeout_s: float) -> None:
        """Return once this node has applied `sequence`; `Timeout` after `timeout_s`."""
        if self._progress.applied() >= sequence:
            return
        self._waiting += 1
        if self._subscription is None:
            self._subscription = await self._nc.subscribe(self._subject, cb=self._notice)
        try:
            await self._progress.wait_applied(sequence, timeout_s)
        finally:
            self._waiting -= 1
            if self._waiting == 0 and self._subscription is not None:
                subscription, self._subscription = self._subscription, None
                await subscription.unsubscribe()

    async def _notice(self, msg: Msg) -> None:
        self._progress.notify()


def main() -> None:
    """Run the snapshot service until SIGINT/SIGTERM."""
    run_service("snapshot", serve)


if __name__ == "__main__":
    main()
