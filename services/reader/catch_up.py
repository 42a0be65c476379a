"""A reader serves only once its node has caught up with the log: a node that joins a cluster,
or comes back far behind, would otherwise answer reads from state minutes old, and a client
that reads without `min_position` cannot tell."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats.js.errors
from nats.js import JetStreamContext

from esdb.contracts.subjects import LOG_STREAM

log = logging.getLogger(__name__)

CHECK_EVERY_S = 0.1


async def log_end(js: JetStreamContext) -> int:
    """The log's last sequence (0 before the first writer created it)."""
    try:
        info = await js.stream_info(LOG_STREAM)
    except nats.js.errors.NotFoundError:
        return 0
    return int(info.state.last_seq)


async def wait_caught_up(
    last_sequence: Callable[[], Awaitable[int]],
    applied: Callable[[], int],
    stop: asyncio.Event,
    *,
    every: float = CHECK_EVERY_S,
) -> bool:
    """Wait until `applied()` reaches the log's end as it stands now; False if `stop` came
    first."""
    target = await last_sequence()
    if applied() < target:
        log.info("catching up to log sequence %d before serving reads", target)
    while applied() < target:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return False
    return True
