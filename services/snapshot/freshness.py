"""Read-your-writes on any node: before answering, wait until this node has applied the log as
it stood when the request arrived (its last sequence, asked of JetStream through the cluster
view)."""

from __future__ import annotations

import asyncio
import time

from esdb.contracts.errors import Timeout, Unavailable
from esdb.shared.cluster_view import ClusterView


class CatchUp:
    """Waits until this node has applied every entry committed before the call began."""

    def __init__(self, view: ClusterView) -> None:
        self._view = view

    async def __call__(self, timeout_s: float) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                state = await self._view.log_state()
        except TimeoutError as e:
            raise Timeout("the replicated log's state did not come in time") from e
        if state is None:
            raise Unavailable("the replicated log does not exist yet; retry")
        await self._view.wait_applied(
            state.last_sequence, max(0.0, timeout_s - (time.monotonic() - started))
        )
