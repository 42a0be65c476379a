"""Node monitor: every writer heartbeats every 2 s; a node missing 3 heartbeats is down."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from esdb.contracts.subjects import NODE_HEARTBEAT

HEARTBEAT_EVERY_S = 2.0
MISSES_FOR_DOWN = 3


class Heartbeat(msgspec.Struct, array_like=True, frozen=True):
    """I am alive, at this applied sequence."""

    node_id: str
    applied_sequence: int


class Membership:
    """Which nodes are up, judged from when each was last heard."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_seen: dict[str, float] = {}

    def saw(self, node_id: str) -> None:
        """Record a heartbeat from `node_id` now."""
        self._last_seen[node_id] = self._clock()

    def view(self) -> dict[str, bool]:
        """Every node ever heard, and whether it is up."""
        now = self._clock()
        limit = HEARTBEAT_EVERY_S * MISSES_FOR_DOWN
        return {node: now - seen <= limit for node, seen in sorted(self._last_seen.items())}


_decoder = msgspec.msgpack.Decoder(Heartbeat)
_encoder = msgspec.msgpack.Encoder()


class NodeMonitor:
    """Publishes this node's heartbeats and keeps the membership view from everyone's."""

    def __init__(self, nc: NatsClient, node_id: str, applied: Callable[[], int]) -> None:
        self._nc = nc
        self._node_id = node_id
        self._applied = applied
        self.membership = Membership()

    async def run(self) -> None:
        """Heartbeat until cancelled."""
        sub = await self._nc.subscribe(NODE_HEARTBEAT, cb=self._on_heartbeat)
        try:
            while True:
                beat = Heartbeat(self._node_id, self._applied())
                with contextlib.suppress(nats.errors.Error):
                    await self._nc.publish(NODE_HEARTBEAT, _encoder.encode(beat))
                await asyncio.sleep(HEARTBEAT_EVERY_S)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _on_heartbeat(self, msg: Msg) -> None:
        with contextlib.suppress(msgspec.DecodeError):
            self.membership.saw(_decoder.decode(msg.data).node_id)
