"""Connecting to NATS the same way in every service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

log = logging.getLogger(__name__)


async def connect(url: str, name: str) -> NatsClient:
    """A connection that reconnects forever and logs state changes."""

    async def on_error(error: Exception) -> None:
        log.warning("nats error: %s", error)

    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


def concurrently(
    handler: Callable[[Msg], Coroutine[Any, Any, None]],
) -> Callable[[Msg], Awaitable[None]]:
    """A subscription callback that handles each message in its own task: nats-py awaits
    callbacks one at a time per subscription, which would serialize slow handlers."""
    running: set[asyncio.Task[None]] = set()

    async def callback(msg: Msg) -> None:
        task = asyncio.create_task(handler(msg))
        running.add(task)
        task.add_done_callback(running.discard)

    return callback
