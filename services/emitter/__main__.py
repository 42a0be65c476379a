"""Entry point: `python -m esdb.services.emitter`: fan-out beside the writer leader only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from esdb.contracts.errors import EsdbError
from esdb.contracts.log import CheckpointOp
from esdb.contracts.subjects import (
    EMITTER_CHECKPOINT,
    node_applied_subject,
)
from esdb.services.emitter.fanout import StoreFanout
from esdb.shared.leadership import leading_ticks
from esdb.shared.nats_connection import connect_service
from esdb.shared.service_runtime import run_service
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import (
    ReadOnlyStores,
    open_system,
    read_checkpoint,
    registered_stores,
)
from esdb.shared.telemetry import Telemetry, connected
from esdb.shared.wakeup import Wakeup
from esdb.shared.writer_ops import submit_ops

log = logging.getLogger(__name__)


class Emitter:
    """Runs one `StoreFanout` per store while this node's writer holds the lease."""

    def __init__(self, settings: Settings, nc: NatsClient) -> None:
        self._settings = settings
        self._nc = nc
        self._stores = ReadOnlyStores(settings.data_dir)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wakeup = Wakeup()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the lease until `stop`: emit while this node leads."""

        async def applied(msg: Msg) -> None:
            self._wakeup.notify()

        # The writer's per-entry notices, only while emitting: a follower's would be wasted.
        notices: Subscription | None = None
        try:
            async for leading in leading_ticks(self._nc, self._settings.node_id, stop):
                if leading:
                    if notices is None:
                        subject = node_applied_subject(self._settings.node_id)
                        notices = await self._nc.subscribe(subject, cb=applied)
                    self._start_new_stores()
                elif self._running or notices is not None:
                    log.info("not beside the leader any more; stopping fan-out")
                    await self._stop_all()
                    if notices is not None:
                        await notices.unsubscribe()
                        notices = None
        finally:
            await self._stop_all()
            self._stores.close()

    def _start_new_stores(self) -> None:
        with open_system(self._settings.data_dir) as system:
            if system is None:
                return
            names = registered_stores(system)
            checkpoints = {
                name: read_checkpoint(system, name, EMITTER_CHECKPOINT) for name in names
            }
        for gone in set(self._running) - set(names):
            log.info("store %r was removed; its fan-out stops", gone)
            self._running.pop(gone).cancel()
        for name in names:
            task = self._running.get(name)
            if task is not None and not task.done():
                continue
            if task is not None and task.exception() is not None:
                log.error("fan-out of %s failed: %s; restarting", name, task.exception())
            log.info("fan-out of store %r from position %d", name, checkpoints[name] + 1)
            fanout = StoreFanout(
                name,
                lambda name=name: self._stores.get(name),  # type: ignore[misc]
                self._publish,
                self._nc.flush,
                lambda position, name=name: self._checkpoint(name, position),  # type: ignore[misc]
                after=checkpoints[name],
                wakeup=self._wakeup,
            )
            self._running[name] = asyncio.create_task(fanout.run())

    async def _publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        await self._nc.publish(subject, payload, headers=headers)

    async def _checkpoint(self, store: str, position: int) -> None:
        try:
            await submit_ops(self._nc, [CheckpointOp(store, EMITTER_CHECKPOINT, position)])
        except EsdbError as e:
            log.warning("checkpoint of %s at %d not recorded: %s", store, position, e)

    async def _stop_all(self) -> None:
        tasks, self._running = list(self._running.values()), {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# Appends block their clients; fan-out is asynchronous and may trail by milliseconds. When the
# CPU is contended the append path goes first (CFS weight 335 against 1024, not starvation).
EMITTER_NICENESS = 5


async def serve(settings: Settings, stop: asyncio.Event, telemetry: Telemetry) -> None:
    """Composition root of an emitter."""
    os.nice(EMITTER_NICENESS)
    nc = await connect_service(settings, f"esdb-emitter-{settings.node_id}")
    telemetry.ready_when(connected(nc))
    try:
        await Emitter(settings, nc).run(stop)
    finally:
        await nc.drain()


def main() -> None:
    """Run the emitter until SIGINT/SIGTERM."""
    run_service("emitter", serve)


if __name__ == "__main__":
    main()
