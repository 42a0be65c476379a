"""A watch: the server filters (payload conditions included) and republishes live events.

The client picks the watch id, subscribes to its subject, then opens it; it renews it every
`RENEW_S` with the last position it received, so a new leader's service that never heard of
it recreates it from there. Events arrive in position order; any at or below the last one
delivered (a republish after a failover) are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from esdb.client.connection import Connection
from esdb.client.events import RecordedEvent, event_from_json
from esdb.client.opening import ClosedOnExit, Opening
from esdb.contracts.errors import EsdbError, InvalidRequest, NotFound
from esdb.contracts.subjects import Op, api_subject
from esdb.contracts.subscriptions import SelectorSpec
from esdb.contracts.topics import POSITION_HEADER
from esdb.contracts.watches import WatchRequest, WatchResult, watch_subject

log = logging.getLogger(__name__)
RENEW_S = 2.0
TTL_MS = 30_000
_result = msgspec.msgpack.Decoder(WatchResult)


class Watch(ClosedOnExit):
    """Matching events as they are committed; `async for event in watch`."""

    def __init__(self, connection: Connection, store: str, spec: SelectorSpec) -> None:
        self._connection = connection
        self._store = store
        self._spec = spec
        self.id = uuid.uuid4().hex
        self.last_position = 0
        self._received = 0
        self._queue: asyncio.Queue[RecordedEvent | EsdbError | None] = asyncio.Queue()
        self._sub: NatsSubscription | None = None
        self._renewing: asyncio.Task[None] | None = None

    async def start(self, after: int | None) -> None:
        """Subscribe, open the watch on the server, and keep it alive."""
        self._sub = await self._connection.nc.subscribe(
            watch_subject(self._store, self.id), cb=self._on_event
        )
        try:
            result = await self._renew(after)
        except EsdbError:
            await self._sub.unsubscribe()
            raise
        self._received = self.last_position = result.after
        self._renewing = asyncio.create_task(self._keep_alive())

    async def _renew(self, after: int | None) -> WatchResult:
        request = WatchRequest(
            selector=self._spec,
            watch=self.id,
            after=after,
            ttl_ms=TTL_MS,
            timeout_ms=self._connection.server_timeout_ms,
        )
        return await self._connection.request(
            api_subject(self._store, Op.WATCH), request, _result, idempotent=True
        )

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(RENEW_S)
            try:
                await self._renew(self._received)
            except (InvalidRequest, NotFound) as e:
                self._queue.put_nowait(e)  # it can never work again
                return
            except EsdbError as e:
                log.info("watch %s not renewed (%s); trying again", self.id, e)

    async def _on_event(self, msg: Msg) -> None:
        position = int((msg.headers or {}).get(POSITION_HEADER, "0"))
        if position <= self._received:
            return
        self._received = position
        self._queue.put_nowait(event_from_json(msg.data))

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> RecordedEvent:
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, EsdbError):
            raise item
        self.last_position = item.position
        return item

    async def close(self) -> None:
        """Stop renewing (the server drops the watch when its ttl runs out) and unsubscribe."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
            self._renewing = None
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None
            self._queue.put_nowait(None)


class Watching(Opening[Watch]):
    """A watch being opened: await it, or use it with `async with`."""

    def __init__(
        self, connection: Connection, store: str, spec: SelectorSpec, after: int | None
    ) -> None:
        self._connection = connection
        self._store = store
        self._spec = spec
        self._after = after

    async def _open(self) -> Watch:
        watch = Watch(self._connection, self._store, self._spec)
        await watch.start(self._after)
        return watch
