"""The live half of a subscription: fan-out messages buffered until the subscriber takes them.

The NATS callback only appends to a bounded buffer, so nats-py never drops a message behind our
back; when the buffer is full we drop it ourselves and record an interruption, as we do when the
connection reconnects (messages published while it was away are gone). The subscription decides
what an interruption means: re-read the store, fill the gap, or report the loss.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import NamedTuple

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from esdb.client.connection import Connection
from esdb.contracts.errors import EsdbError, Unavailable
from esdb.contracts.topics import POSITION_HEADER

DEFAULT_BUFFER_SIZE = 50_000
"""Live messages a subscription holds before it drops them (and recovers or reports it)."""


class LiveMessage(NamedTuple):
    """One fan-out message: the position from its header (None if absent) and its payload."""

    position: int | None
    payload: bytes


class LiveFeed:
    """A bounded buffer of live messages with interruption, failure and close signals."""

    def __init__(self, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        self._messages: deque[LiveMessage] = deque()
        self._buffer_size = buffer_size
        self._ready = asyncio.Event()
        self._interrupted = False
        self._failure: EsdbError | None = None
        self.closed = False

    def push(self, message: LiveMessage) -> None:
        """Buffer a message; past the buffer size, drop it and record an interruption."""
        if self.closed:
            return
        if len(self._messages) >= self._buffer_size:
            self.interrupt()
            return
        self._messages.append(message)
        self._ready.set()

    def interrupt(self) -> None:
        """Record that messages may have been lost."""
        self._interrupted = True
        self._ready.set()

    def take_interruption(self) -> bool:
        """Whether messages may have been lost since the last call."""
        interrupted, self._interrupted = self._interrupted, False
        return interrupted

    def fail(self, error: EsdbError) -> None:
        """No more messages will come: `get` raises `error` once the buffer is empty."""
        if self._failure is None:
            self._failure = error
        self._ready.set()

    def close(self) -> None:
        """Stop: `get` returns None from now on, buffered messages are discarded."""
        self.closed = True
        self._messages.clear()
        self._ready.set()

    def get_nowait(self) -> LiveMessage | None:
        """The oldest buffered message, or None when there is none."""
        if self._messages:
            return self._messages.popleft()
        return None

    async def get(self) -> LiveMessage | None:
        """The oldest buffered message, waiting for one; None once closed or interrupted
        (check `take_interruption`)."""
        while True:
            if self.closed:
                return None
            if self._messages:
                return self._messages.popleft()
            if self._interrupted:
                return None
            if self._failure is not None:
                raise self._failure
            self._ready.clear()
            await self._ready.wait()

    # Connection watcher: called by `Connection` on reconnects and when it closes for good.

    def reconnected(self) -> None:
        """Messages published while the connection was away are lost."""
        self.interrupt()

    def connection_closed(self) -> None:
        """The NATS connection is gone for good."""
        self.fail(Unavailable("the NATS connection closed; subscribe again"))


class NatsFeed:
    """A `LiveFeed` filled by a NATS subscription on one subject."""

    def __init__(self, connection: Connection, feed: LiveFeed) -> None:
        self._connection = connection
        self.feed = feed
        self._subscription: NatsSubscription | None = None

    @classmethod
    async def open(cls, connection: Connection, subject: str, buffer_size: int) -> NatsFeed:
        """Subscribe to `subject` and wait until the server has registered the interest, so
        every message published from now on is buffered."""
        live = cls(connection, LiveFeed(buffer_size))
        try:
            live._subscription = await connection.nc.subscribe(subject, cb=live._on_message)
            await connection.nc.flush(timeout=max(1, round(connection.timeout)))
        except (TimeoutError, nats.errors.Error) as e:
            await live.close()
            raise Unavailable(f"cannot subscribe to {subject}: {e}", subject=subject) from e
        connection.watch(live.feed)
        return live

    async def _on_message(self, msg: Msg) -> None:
        header = (msg.headers or {}).get(POSITION_HEADER)
        try:
            position = int(header) if header is not None else None
        except ValueError:
            position = None
        self.feed.push(LiveMessage(position, msg.data))

    async def close(self) -> None:
        """Unsubscribe and end the feed."""
        self.feed.close()
        self._connection.unwatch(self.feed)
        subscription, self._subscription = self._subscription, None
        if subscription is not None and not self._connection.nc.is_closed:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
