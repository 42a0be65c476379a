"""Connecting to NATS the same way in every service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from esdb.shared.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def tls_context(url: str, ca_file: str = "") -> ssl.SSLContext | None:
    """The TLS context for `url`: verifying with `ca_file` (else the system's CAs) when the
    URL is `tls://` or a CA is given; None for plain connections."""
    if not ca_file and not url.startswith("tls://"):
        return None
    return ssl.create_default_context(cafile=ca_file or None)


async def connect_service(settings: Settings, name: str) -> NatsClient:
    """A service's connection, as its settings say (URL with credentials, TLS CA)."""
    return await connect(
        settings.nats_url, name, tls=tls_context(settings.nats_url, settings.tls_ca_file)
    )


async def connect(url: str, name: str, *, tls: ssl.SSLContext | None = None) -> NatsClient:
    """A connection (to any of the comma-separated `url`s) that reconnects forever and logs
    state changes."""

    async def on_error(error: Exception) -> None:
        log.warning("nats error: %s", error)

    connected: list[NatsClient] = []

    async def on_disconnect() -> None:
        if connected and (connected[0].is_draining or connected[0].is_closed):
            return  # our own graceful stop, not news
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    nc = await nats.connect(
        url.split(","),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        # A partition drops packets silently; find a dead server in ~6 s, not nats-py's ~6 min.
        ping_interval=2,
        max_outstanding_pings=3,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        tls=tls,
    )
    connected.append(nc)
    return nc


async def connect_once(
    url: str, *, timeout: float, tls: ssl.SSLContext | None = None
) -> NatsClient:
    """A connection for one short job of a tool: a server that cannot be reached fails it
    within about `timeout`, quietly (nats-py would otherwise retry a first connect 60 times,
    2 s apart, and log each try); the caller reports the error once."""

    async def quiet(error: Exception) -> None:
        pass

    connecting = nats.connect(
        url.split(","),
        allow_reconnect=False,
        connect_timeout=timeout,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.5,
        error_cb=quiet,
        tls=tls,
    )
    return await asyncio.wait_for(connecting, timeout * 2)


async def unsubscribe(*subs: Subscription | None) -> None:
    """End every subscription given (None: none); one the connection already lost is gone
    anyway."""
    for sub in subs:
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


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


async def retry_until_ready(
    attempt: Callable[[], Coroutine[Any, Any, T]],
    *,
    what: str,
    timeout: float,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Run `attempt` until it stops failing with NATS errors (or `retry_on`'s), or `timeout`
    passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.1
    retryable: tuple[type[Exception], ...] = (nats.errors.Error, TimeoutError, *retry_on)
    while True:
        try:
            return await attempt()
        except retryable as e:
            if loop.time() > deadline:
                raise
            log.info("%s not ready yet (%s); retrying in %.1f s", what, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def gather_replies(
    nc: NatsClient,
    subject: str,
    payload: bytes,
    window: float,
    until: Callable[[bytes], bool] | None = None,
) -> list[bytes]:
    """Publish a request that many may answer and collect every answer for `window` seconds,
    or until an answer satisfies `until`."""
    inbox = nc.new_inbox()
    replies: asyncio.Queue[Msg] = asyncio.Queue()

    async def collect(msg: Msg) -> None:
        await replies.put(msg)

    sub = await nc.subscribe(inbox, cb=collect)
    try:
        await nc.publish(subject, payload, reply=inbox)
        found: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await asyncio.wait_for(replies.get(), left)
            except TimeoutError:
                break
            if msg.data:  # an empty message is the server's "no responders" status
                found.append(bytes(msg.data))
                if until is not None and until(found[-1]):
                    break
        return found
    finally:
        await unsubscribe(sub)  # a stop may have closed the connection meanwhile
