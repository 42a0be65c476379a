"""Read-your-writes on any node, for node-local services (snapshots, projections): before
answering, wait until this node has applied the log as it stood when the request arrived (its
last sequence, asked of JetStream through the cluster view), within the request's deadline."""

from __future__ import annotations

import asyncio
import time

from esdb.contracts.errors import InvalidRequest, Timeout, Unavailable
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


class Deadline:
    """When a request must be answered by: its `timeout_ms`, or the service's default."""

    def __init__(self, timeout_ms: int | None, default_ms: int) -> None:
        if timeout_ms is not None and timeout_ms <= 0:
            raise InvalidRequest("timeout_ms must be positive", field="timeout_ms")
        self._end = time.monotonic() + (timeout_ms or default_ms) / 1000

    def left(self) -> float:
        """Seconds left (at least a millisecond, so a late step still gets its chance)."""
        return max(0.001, self._end - time.monotonic())
