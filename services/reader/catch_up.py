"""A reader serves only once its node has caught up with the log: a node that joins a cluster,
or comes back far behind, would otherwise answer reads from state minutes old, and a client
that reads without `min_position` cannot tell."""

from __future__ import annotations

import asyncio
import logging
import math

from esdb.shared.cluster_view import ClusterView

log = logging.getLogger(__name__)


async def log_end(view: ClusterView) -> int:
    """The log's last sequence (0 before the first writer created it); `Unavailable` while
    JetStream cannot say."""
    state = await view.log_state(timeout=2.0)
    return 0 if state is None else state.last_sequence


async def wait_caught_up(view: ClusterView, target: int, stop: asyncio.Event) -> bool:
    """Wait until this node has applied the log up to `target`; False if `stop` came first."""
    if view.applied < target:
        log.info("catching up to log sequence %d before serving reads", target)
    waiting = asyncio.ensure_future(view.wait_applied(target, math.inf))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not waiting.done():
        waiting.cancel()
        return False
    waiting.result()
    return True
