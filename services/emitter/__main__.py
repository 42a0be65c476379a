"""Entry point: `python -m esdb.services.emitter`: fan-out beside the writer leader only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from esdb.contracts.commands import CheckpointCommand, WriteOutcome
from esdb.contracts.subjects import (
    EMITTER_CHECKPOINT,
    LEASE_BUCKET,
    LEASE_KEY,
    WRITER_CHECKPOINTS,
    lease_holder,
    node_applied_subject,
)
from esdb.services.emitter.fanout import StoreFanout, Wakeup
from esdb.shared.nats_connection import connect, retry_until_ready
from esdb.shared.service_runtime import run_service
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import (
    SYSTEM_STORE_DIR,
    ReadOnlyStores,
    read_checkpoint,
    registered_stores,
)
from esdb.shared.storage.lmdb_store import LmdbStore, store_exists

log = logging.getLogger(__name__)
LEADER_POLL_S = 0.25
_encoder = msgspec.msgpack.Encoder()
_outcome = msgspec.msgpack.Decoder(WriteOutcome)


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

        await self._nc.subscribe(node_applied_subject(self._settings.node_id), cb=applied)
        js = self._nc.jetstream(timeout=2)
        kv = await retry_until_ready(
            lambda: js.key_value(LEASE_BUCKET), what="the lease bucket", timeout=300
        )
        try:
            while not stop.is_set():
                try:
                    entry = await kv.get(LEASE_KEY)
                    leading = lease_holder(entry.value) == self._settings.node_id
                except (nats.js.errors.KeyNotFoundError, nats.errors.Error):
                    leading = False
                if leading:
                    self._start_new_stores()
                elif self._running:
                    log.info("not beside the leader any more; stopping fan-out")
                    await self._stop_all()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), LEADER_POLL_S)
        finally:
            await self._stop_all()
            self._stores.close()

    def _start_new_stores(self) -> None:
        system_path = self._settings.data_dir / SYSTEM_STORE_DIR
        if not store_exists(system_path):
            return
        system = LmdbStore(system_path, readonly=True)
        try:
            names = registered_stores(system)
            checkpoints = {
                name: read_checkpoint(system, name, EMITTER_CHECKPOINT) for name in names
            }
        finally:
            system.close()
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
        command = CheckpointCommand(store, EMITTER_CHECKPOINT, position)
        try:
            reply = await self._nc.request(WRITER_CHECKPOINTS, _encoder.encode(command), timeout=5)
        except nats.errors.Error as e:
            log.warning("checkpoint of %s at %d not recorded: %s", store, position, e)
            return
        outcome = _outcome.decode(reply.data)
        if outcome.error is not None:
            log.warning("checkpoint of %s at %d refused: %s", store, position, outcome.error)

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


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Composition root of an emitter."""
    os.nice(EMITTER_NICENESS)
    nc = await connect(settings.nats_url, f"esdb-emitter-{settings.node_id}")
    try:
        await Emitter(settings, nc).run(stop)
    finally:
        await nc.drain()


def main() -> None:
    """Run the emitter until SIGINT/SIGTERM."""
    run_service("emitter", serve)


if __name__ == "__main__":
    main()
