"""The client's NATS connection: msgpack request-reply with errors translated to exceptions,
retried per the connection's `RetryPolicy`, across every NATS server it was given."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import ssl
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient

from esdb.client.retry import RetryPolicy, retrying
from esdb.contracts.errors import (
    ErrorReply,
    EsdbError,
    Timeout,
    TooLarge,
    Unauthorized,
    Unavailable,
    error_from_body,
)
from esdb.contracts.subjects import WRITER_SERVING, leader_subject, public_subject

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_URL = "nats://127.0.0.1:4222"
RECONNECT_WAIT_S = 1
"""How long the connection waits before trying a NATS server again after losing it; it goes
on trying (every server it knows, in turn) until it is closed."""

# Every result has a different first key, so a one-key map whose key is "error" is an error.
_ERROR_PREFIX = b"\x81\xa5error"
_encoder = msgspec.msgpack.Encoder()
_error_decoder = msgspec.msgpack.Decoder(ErrorReply)


class ConnectionWatcher(Protocol):
    """Told when the connection comes back after an outage, and when it is gone for good."""

    def reconnected(self) -> None: ...

    def connection_closed(self) -> None: ...


class Requests(ABC):
    """Msgpack request-reply, retried per `retry`; replies decode to typed structs. How a
    request travels is the subclass's: `Connection` over nats-py on an event loop,
    `blocking.BlockingConnection` over blocking sockets in the calling thread."""

    def __init__(self, url: str, timeout: float, retry: RetryPolicy | None) -> None:
        self.url = url
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        # Ask the server to give up a little before we do, so a slow request comes back as
        # its typed error (with details) rather than as a bare NATS timeout here.
        self.server_timeout_ms = max(1, int(timeout * 1000) - min(500, int(timeout * 200)))

    @property
    @abstractmethod
    def closed(self) -> bool:
        """Whether the connection is closed or closing (no request is retried then)."""

    @abstractmethod
    async def close(self) -> None:
        """Finish requests in flight and close the connection."""

    @abstractmethod
    async def _request_once(
        self, subject: str, payload: bytes, decoder: msgspec.msgpack.Decoder[T], write: bool
    ) -> T:
        """Send `payload` once; the decoded reply, or its error raised."""

    async def _sleep(self, seconds: float) -> None:
        """Wait between retries."""
        await asyncio.sleep(seconds)

    async def request(
        self,
        subject: str,
        body: Any,
        decoder: msgspec.msgpack.Decoder[T],
        *,
        write: bool = False,
        idempotent: bool = False,
    ) -> T:
        """Send `body` as msgpack to `subject`; return the decoded result or raise its error.

        `Unavailable` and `Timeout` are retried as the retry policy allows, with the very
        same bytes: always when the request reached no gateway, otherwise only when it is
        `idempotent` (sending it twice does what sending it once does: reads, appends whose
        events all have ids). A `write` that times out says it may have landed."""
        payload = _encoder.encode(body)

        def may_retry(error: EsdbError) -> bool:
            delivered = error.details.get("delivered") is not False
            return not self.closed and (idempotent or not delivered)

        return await retrying(
            lambda: self._request_once(subject, payload, decoder, write),
            self.retry,
            may_retry=may_retry,
            what=subject,
            sleep=self._sleep,
        )


def live(requests: Requests) -> Connection:
    """`requests` as the event-loop connection that subscriptions, watches and consumer
    groups need (a `SyncClient` sends only request-reply calls over blocking sockets)."""
    if not isinstance(requests, Connection):
        raise TypeError("subscriptions need a client on an event-loop connection")
    return requests


def decoded(data: bytes | bytearray | memoryview, decoder: msgspec.msgpack.Decoder[T]) -> T:
    """A reply's result, or its error raised."""
    if data[: len(_ERROR_PREFIX)] == _ERROR_PREFIX:
        raise error_from_body(_error_decoder.decode(data).error)
    return decoder.decode(data)


class Connection(Requests):
    """Requests over one nats-py connection, on its event loop."""

    def __init__(
        self,
        nc: NatsClient,
        url: str,
        timeout: float,
        watchers: set[ConnectionWatcher] | None = None,
        *,
        retry: RetryPolicy | None = None,
        denials: Denials | None = None,
        in_flight: InFlight | None = None,
        servers: Sequence[str] = (),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(url, timeout, retry)
        self.nc = nc
        self.servers = tuple(servers)
        """The NATS server URLs it was given."""
        self.tls = tls
        self._denials = denials or Denials(watching=False)
        self._in_flight = in_flight or InFlight()
        self._watchers = watchers if watchers is not None else set()
        self.hears_leaders = False
        """Whether it hears new writer leaders announce (`hear_leaders`): then its writes go
        straight to the leader, with no gateway keeping a copy."""

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        timeout: float,
        servers: Sequence[str] | None = None,
        retry: RetryPolicy | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> Connection:
        """Connect to the NATS servers `servers` (by default those of the comma-separated
        `url`, which names them in messages); fail fast with `Unavailable` when none
        accepts. Once connected, a lost server is replaced by any other, for good."""
        if servers is None:
            servers = [server.strip() for server in url.split(",") if server.strip()]
        servers = list(servers)
        loop = asyncio.get_running_loop()
        first_errors: list[Exception] = []
        all_failed: asyncio.Future[None] = loop.create_future()

        # Only a user-authenticated connection has permissions to violate.
        denials = Denials(watching=inbox_prefix_of(servers) != "_INBOX")

        async def on_error(error: Exception) -> None:
            if denials.denied(error):
                return  # answered as `unauthorized` by the request it concerns
            if not all_failed.done():
                first_errors.append(error)
                if len(first_errors) >= len(servers):
                    all_failed.set_result(None)
            else:
                log.warning("nats error: %s", error)

        # Live subscriptions watch the connection: after a reconnect they may have missed
        # messages, and once it closes for good no more will come.
        watchers: set[ConnectionWatcher] = set()

        async def on_reconnected() -> None:
            in_flight.connection_back()
            for watcher in list(watchers):
                watcher.reconnected()

        async def on_closed() -> None:
            for watcher in list(watchers):
                watcher.connection_closed()

        in_flight = InFlight()

        async def on_disconnected() -> None:
            in_flight.connection_lost()

        nc = NatsClient()
        connecting = asyncio.ensure_future(
            nc.connect(
                servers,
                name="esdb-client",
                connect_timeout=max(1, math.ceil(timeout)),
                reconnect_time_wait=RECONNECT_WAIT_S,
                max_reconnect_attempts=-1,
                tls=tls,
                inbox_prefix=inbox_prefix_of(servers),
                error_cb=on_error,
                reconnected_cb=on_reconnected,
                disconnected_cb=on_disconnected,
                closed_cb=on_closed,
            )
        )
        done, _ = await asyncio.wait(
            {connecting, all_failed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if connecting in done:
            error = connecting.exception()
            if error is None:
                if not all_failed.done():
                    all_failed.set_result(None)  # later errors are logged, not collected
                connection = cls(
                    nc,
                    url,
                    timeout,
                    watchers,
                    retry=retry,
                    denials=denials,
                    in_flight=in_flight,
                    servers=servers,
                    tls=tls,
                )
                await connection.hear_leaders()
                return connection
            reason: object = error
        else:
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connecting
            reason = first_errors[-1] if first_errors else "timed out"
        with contextlib.suppress(Exception):
            await nc.close()
        raise Unavailable(f"cannot connect to NATS at {url}: {reason}", url=url)

    async def hear_leaders(self) -> None:
        """Listen for new writer leaders (`WRITER_SERVING`): a write still waiting when one
        announces went to an earlier leader or to none, and is given up at once as
        `Timeout` (and retried when that is safe) instead of waiting out its timeout. Its
        writes then go to `esdb.leader.<store>.<op>`, which no gateway copies for that
        purpose. Where this connection may not listen (permissions from before the
        subject), writes keep going to `esdb.api` and the gateways' copy covers them."""

        async def on_serving(_: Any) -> None:
            self._in_flight.leader_serving()

        try:
            await self.nc.subscribe(WRITER_SERVING, cb=on_serving)
            await self.nc.flush(timeout=max(1, math.ceil(self.timeout)))
        except (nats.errors.Error, TimeoutError) as e:
            log.info("not hearing writer leaders (%s): writes go through the gateways", e)
            return
        self.hears_leaders = not self._denials.refused_subscription(WRITER_SERVING)

    def watch(self, watcher: ConnectionWatcher) -> None:
        """Tell `watcher` about reconnects and the final close."""
        self._watchers.add(watcher)

    def unwatch(self, watcher: ConnectionWatcher) -> None:
        """Stop telling `watcher`."""
        self._watchers.discard(watcher)

    async def close(self) -> None:
        """Drain in-flight requests and close the connection."""
        if self.nc.is_closed:
            return
        try:
            await self.nc.drain()
        except nats.errors.Error:
            await self.nc.close()

    @property
    def closed(self) -> bool:
        return bool(self.nc.is_closed)

    async def _request_once(
        self, subject: str, payload: bytes, decoder: msgspec.msgpack.Decoder[T], write: bool
    ) -> T:
        if self.nc.is_closed or self.nc.is_draining:
            # nats-py would wait out the whole timeout for a reply that cannot come.
            raise Unavailable(f"the connection to {self.url} is closing", delivered=False)
        if not await self._in_flight.connected(self.timeout):
            raise Unavailable(
                f"no NATS server of {self.url} took the connection back within {self.timeout:g} s",
                url=self.url,
                delivered=False,
            )
        straight = leader_subject(subject) if write and self.hears_leaders else None
        try:
            reply = await self._in_flight.run(
                self._denials.guard(
                    subject,
                    self.nc.request(
                        # No Content-Type header: a msgpack body is known by its first byte.
                        straight or subject,
                        payload,
                        timeout=self.timeout,
                    ),
                ),
                write=straight is not None,
            )
        except LeaderChanged as e:
            raise leader_changed(subject) from e
        except ConnectionLost as e:
            landed = "; the write may have landed" if write else ""
            raise Unavailable(
                f"the connection to NATS was lost before the reply came{landed}", url=self.url
            ) from e
        except nats.errors.NoRespondersError as e:
            raise Unavailable(
                f"no esdb gateway answers on {self.url}", url=self.url, delivered=False
            ) from e
        except nats.errors.MaxPayloadError as e:
            raise TooLarge(f"the request to {subject} is over the servers' max_payload") from e
        except nats.errors.TimeoutError as e:
            landed = " (the write may still have landed)" if write else ""
            raise Timeout(
                f"no reply to {subject} within {self.timeout:g} s{landed}", subject=subject
            ) from e
        except nats.errors.Error as e:
            raise Unavailable(f"NATS request to {self.url} failed: {e}", url=self.url) from e
        return decoded(reply.data, decoder)


class ConnectionLost(Exception):
    """The connection dropped while a request waited: its reply cannot come any more."""


def leader_changed(subject: str) -> Timeout:
    """The error of a write given up because a new writer leader announced while it waited."""
    return Timeout(
        f"the writer leader changed while {subject} waited; the outcome is unknown: "
        "retry with the same ids",
        subject=subject,
    )


class LeaderChanged(Exception):
    """A new writer leader announced while a write waited: the leader it went to, if any,
    will not answer it."""


class InFlight:
    """The requests waiting for replies. Replies come back on the connection that sent the
    request, so when it drops (a server stopped for a rolling restart) they fail at once and
    are retried on the new one, rather than each waiting out its whole timeout. The waiting
    task itself is interrupted: a task of its own per request cost about 10 µs of CPU."""

    def __init__(self) -> None:
        self._waiting: set[asyncio.Task[Any]] = set()
        self._lost: set[asyncio.Task[Any]] = set()
        self._writes: set[asyncio.Task[Any]] = set()
        self._superseded: set[asyncio.Task[Any]] = set()
        self._up = asyncio.Event()
        self._up.set()

    async def connected(self, timeout: float) -> bool:
        """Whether the connection is up, waiting up to `timeout` s for it to come back."""
        if self._up.is_set():
            return True
        # A request sent meanwhile would sit in nats-py's buffer, and be lost with it if the
        # next server tried fails too: each such loss used up a retry within milliseconds.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), timeout)
        return self._up.is_set()

    def connection_back(self) -> None:
        """The connection is up again: requests may be sent."""
        self._up.set()

    def connection_lost(self) -> None:
        """Fail every request still waiting with `ConnectionLost`; hold new ones until the
        connection is back."""
        self._up.clear()
        for task in self._waiting - self._lost - self._superseded:
            self._lost.add(task)
            task.cancel()

    def leader_serving(self) -> None:
        """A new writer leader serves: fail every write sent straight to a leader and still
        waiting with `LeaderChanged`."""
        for task in self._writes - self._lost - self._superseded:
            self._superseded.add(task)
            task.cancel()

    async def run(self, request: Awaitable[T], *, write: bool = False) -> T:
        """Await `request` in this task; `ConnectionLost` if the connection drops first, and
        for a `write` sent straight to the leader `LeaderChanged` if a new one serves first."""
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        if write:
            self._writes.add(task)
        try:
            return await request
        except asyncio.CancelledError:
            # Only our own cancel, not also the caller's, becomes ConnectionLost.
            if task in self._lost and task.uncancel() == 0:
                raise ConnectionLost() from None
            if task in self._superseded and task.uncancel() == 0:
                raise LeaderChanged() from None
            raise
        finally:
            self._waiting.discard(task)
            self._lost.discard(task)
            self._writes.discard(task)
            self._superseded.discard(task)


def inbox_prefix_of(servers: Sequence[str]) -> str:
    """Where replies come back: `_INBOX_<user>` for a user-authenticated connection, which is
    all a stack started with `esdb up --auth` lets a user subscribe to; else `_INBOX`."""
    users = {urlsplit(server).username for server in servers} - {None}
    return f"_INBOX_{users.pop()}" if len(users) == 1 else "_INBOX"


_DENIED = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)
_NOT_SUBSCRIBED = re.compile(r'permissions violation for subscription to "([^"]+)"', re.IGNORECASE)


class Denials:
    """Permission violations the server reports (asynchronously, as errors) fail the requests
    they concern at once, as `Unauthorized`, instead of leaving them to time out."""

    def __init__(self, *, watching: bool) -> None:
        self._watching = watching
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._refused: set[str] = set()

    def refused_subscription(self, subject: str) -> bool:
        """Whether the server refused this connection a subscription to `subject`."""
        return subject in self._refused

    def denied(self, error: Exception) -> bool:
        """Whether `error` is a permission violation: a publish's requests fail; a refused
        subscription is remembered."""
        refused = _NOT_SUBSCRIBED.search(str(error))
        if refused is not None:
            self._refused.add(refused.group(1))
            return True
        found = _DENIED.search(str(error))
        if found is None:
            return False
        for waiter in self._waiting.pop(public_subject(found.group(1)), set()):
            if not waiter.done():
                waiter.set_result(None)
        return True

    async def guard(self, subject: str, request: Awaitable[T]) -> T:
        """Await `request`, unless publishing on `subject` is denied first."""
        if not self._watching:
            return await request  # nothing extra on the path of a connection without a user
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(subject, set()).add(waiter)
        sending = asyncio.ensure_future(request)
        pending: set[asyncio.Future[Any]] = {sending, waiter}
        try:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting = self._waiting.get(subject)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._waiting[subject]
        if sending.done():
            return sending.result()
        sending.cancel()
        raise Unauthorized(f"this credential may not publish to {subject}", subject=subject)
