"""Events pushed to a browser as they are committed, over server-sent events.

Each open live page is one NATS subscription to the live fan-out subject of its selection,
on the connection of the session's user, relayed without decoding: the fan-out message is
already the event's JSON. A page that resumes (after a pause, or a dropped connection, from
`after` or the browser's `Last-Event-ID`) first reads what it missed from the store, then
goes on live without a gap or a duplicate (positions only rise). Before the first live event
it also reads anything between the last event sent and that one, since the fan-out can
publish an event before this node's reader has applied it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import msgspec
from aiohttp import web
from nats.aio.msg import Msg

from esdb.client import Client, EsdbError, ReadAllPage
from esdb.contracts.api import ReadFilter
from esdb.contracts.topics import POSITION_HEADER
from esdb.services.ui.access import Account
from esdb.services.ui.forms import LiveSelection
from esdb.services.ui.present import event_json

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
"""A comment line this often keeps proxies from closing a quiet stream."""
BACKLOG = 20_000
"""Live events waiting for a slow browser; past this the stream ends with a `gap` event
and the page resumes from the store."""
CATCH_UP_PAGE = 500
MAX_CATCH_UP = 5_000
"""The most positions a resume reads back; beyond that it says so (a `skipped` event) and
starts that far behind the newest."""
BATCH = 500
"""The most events written to the browser at once."""


def sse_message(position: int, payload: bytes, event: str = "event") -> bytes:
    """One server-sent event: its id (the position, which a reconnecting browser sends
    back as `Last-Event-ID`), its name and its data lines."""
    if b"\n" in payload:
        payload = payload.replace(b"\r", b"").replace(b"\n", b"\ndata: ")
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (position, event.encode(), payload)


class LiveStream:
    """One browser's stream of live events."""

    def __init__(
        self,
        account: Account,
        store: str,
        selection: LiveSelection,
        after: int | None,
        closing: asyncio.Event,
    ) -> None:
        self._account = account
        self._store = store
        self._selection = selection
        self._after = after
        self._closing = closing
        self._queue: list[tuple[int, bytes]] = []
        self._wake = asyncio.Event()
        self._overflow = False
        self.last = after or 0
        self.sent = 0

    def _on_message(self, msg: Msg) -> None:
        if self._overflow:
            return
        try:
            position = int((msg.headers or {}).get(POSITION_HEADER, "0"))
        except ValueError:
            return
        self._queue.append((position, msg.data))
        if len(self._queue) > BACKLOG:
            self._overflow = True
        self._wake.set()

    async def run(self, request: web.Request) -> web.StreamResponse:
        """Subscribe, catch up if resuming, then relay until the browser goes away or the
        UI stops."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        on_message: Callable[[Msg], None] = self._on_message

        async def callback(msg: Msg) -> None:
            on_message(msg)

        subscription = await self._account.nc.subscribe(
            self._selection.subject(self._store), cb=callback
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 1000\n: live\n\n")
            newest = await self._newest(response)
            if self._after is None:
                # Where this page starts: what a pause before any event resumes from.
                self.last = newest
                head = msgspec.json.encode({"head": newest})
                await response.write(sse_message(newest, head, "opened"))
            else:
                await self._catch_up(response, newest, self._after + 1)
            await self._relay(response)
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass  # the browser left
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        return response

    async def _newest(self, response: web.StreamResponse) -> int:
        """The store's newest position (subscribed already, so nothing after it is missed)."""
        try:
            head = await self._account.client(self._store).read_all(
                from_position="end", direction="backward", limit=1
            )
        except EsdbError as e:
            await response.write(sse_message(self.last, _error(e), "problem"))
            return self.last
        return head.events[0].position if head.events else 0

    async def _catch_up(
        self,
        response: web.StreamResponse,
        newest: int,
        start: int,
        min_position: int | None = None,
    ) -> None:
        """Send what is in the store from `start` (once the reader has applied `min_position`,
        when given)."""
        client = self._account.client(self._store)
        filter_ = self._selection.read_filter()
        try:
            if newest - start > MAX_CATCH_UP:
                start = newest - MAX_CATCH_UP + 1
                skipped = msgspec.json.encode({"skipped_to": start})
                await response.write(sse_message(start - 1, skipped, "skipped"))
            position: int | None = start
            while position is not None and not self._closing.is_set():
                page = await read_page(client, position, filter_, min_position)
                chunk = bytearray()
                for event in page.events:
                    if event.position > self.last:
                        chunk += sse_message(event.position, event_json(event))
                        self.last = event.position
                        self.sent += 1
                if chunk:
                    await response.write(bytes(chunk))
                position = page.next_position
        except EsdbError as e:
            await response.write(sse_message(self.last, _error(e), "problem"))

    async def _fill_before(self, response: web.StreamResponse, first_live: int) -> None:
        """Send what the store holds between the last event sent and the first live one.

        The fan-out publishes an event once it is in the log, which can be before this node's
        reader has applied it: an event published before the subscription began and not yet
        readable when the page read the store would otherwise be missing. The reader waits
        until it has applied everything before `first_live` (`min_position`)."""
        if first_live > self.last + 1:
            await self._catch_up(response, first_live - 1, self.last + 1, first_live - 1)

    async def _relay(self, response: web.StreamResponse) -> None:
        first_live = True
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            while not self._closing.is_set():
                if not self._queue:
                    self._wake.clear()
                    woke = asyncio.ensure_future(self._wake.wait())
                    done, _ = await asyncio.wait(
                        {woke, closing}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED
                    )
                    woke.cancel()
                    if not done:
                        await response.write(b": keepalive\n\n")
                        continue
                if self._overflow:
                    await response.write(sse_message(self.last, b'{"behind": true}', "gap"))
                    return
                if first_live:
                    first_live = False
                    await self._fill_before(response, self._queue[0][0])
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
                chunk = bytearray()
                for position, payload in batch:
                    if position > self.last:
                        chunk += sse_message(position, payload)
                        self.last = position
                        self.sent += 1
                if chunk:
                    await response.write(bytes(chunk))
        finally:
            closing.cancel()


async def read_page(
    client: Client,
    position: int,
    filter_: dict[str, object] | None,
    min_position: int | None = None,
) -> ReadAllPage:
    """One forward page of `$all` from `position`, filtered as the live page is."""
    read_filter = None if filter_ is None else msgspec.convert(filter_, ReadFilter)
    return await client.read_all(
        from_position=position,
        direction="forward",
        limit=CATCH_UP_PAGE,
        filter=read_filter,
        min_position=min_position,
    )


def _error(error: EsdbError) -> bytes:
    return msgspec.json.encode({"code": error.code.value, "message": error.message})
