"""The emitter's core: while this node's writer holds the lease, one `LogFanout` of every
store, started again after a failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from esdb.services.emitter.fanout import LogFanout
from esdb.shared.cluster_view import ClusterView, follow_leader
from esdb.shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

RESTART_S = 0.25
"""How long a failed fan-out waits before it starts again from the checkpoints."""


class Emitter:
    """Runs a `LogFanout` (a new one from `fanout`) while this node's writer holds the lease."""

    def __init__(self, view: ClusterView, fanout: Callable[[], LogFanout]) -> None:
        self._view = view
        self._new_fanout = fanout
        self._fanout: LogFanout | None = None
        self._leading: asyncio.Task[None] | None = None

    @property
    def stores(self) -> list[str]:
        """The stores being fanned out now."""
        return [] if self._fanout is None else self._fanout.stores

    @property
    def fanout(self) -> LogFanout | None:
        """The fan-out running now (None while another node's writer leads)."""
        return self._fanout

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the lease until `stop`: emit while this node's writer holds it."""
        await follow_leader(self._view, stop, start=self._start, end=self._end, serving=False)

    async def _start(self) -> None:
        self._leading = asyncio.create_task(self._lead(), name="emitter fan-out")

    async def _end(self) -> None:
        log.info("not beside the leader any more; stopping fan-out")
        leading, self._leading = self._leading, None
        await cancel_and_wait(leading)
        self._fanout = None

    async def _lead(self) -> None:
        while True:
            self._fanout = self._new_fanout()
            try:
                await self._fanout.run()
            except Exception as e:
                log.error("fan-out failed: %s; starting again from the checkpoints", e)
            self._fanout = None
            await asyncio.sleep(RESTART_S)
