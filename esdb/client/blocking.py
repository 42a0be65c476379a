"""Request-reply on blocking sockets, in the calling thread: how `SyncClient` sends requests.

Handing a call to the client's event loop thread and waiting for it there cost about 45 µs of
CPU per call, and nats-py's request on that loop about 190 more; the same request-reply on a
blocking socket costs about 36 (one `read_stream` of 4 events, on a loaded 2-core machine;
docs/eventsourcing.md has the figures). So a `SyncClient` sends its request-reply calls here:
each calling thread borrows a NATS connection of its own from a pool (a plain TCP socket, TLS
when the server requires it), publishes the request with a reply subject of that connection's
inbox, and reads the socket until the reply comes. Nothing else reads the socket, so there is
no thread hand-off, task or future per request. Subscriptions and consumer groups stay on the
event loop, which has to read messages nobody waits for.

The client's request code is shared with the async client: `BlockingConnection` is a
`Requests` whose `_request_once` blocks instead of awaiting, so a `Client` over it runs to its
end without ever suspending, and `drive` runs such a coroutine in the calling thread.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec

from esdb.client.connection import Requests, decoded, inbox_prefix_of, leader_changed
from esdb.client.retry import RetryPolicy
from esdb.contracts.errors import Timeout, TooLarge, Unauthorized, Unavailable
from esdb.contracts.subjects import WRITER_SERVING, leader_subject

T = TypeVar("T")

DEFAULT_PORT = 4222
BLOCKING_SCHEMES = ("nats", "tls")
"""NATS URL schemes a blocking connection speaks (not websockets)."""
DRAIN_S = 10.0
"""How long closing waits for other threads' calls in flight (retries end well before)."""
IDLE_CHECK_S = 1.0
"""A pooled connection idle this long is checked for what the server sent meanwhile (PINGs
to answer, or its close) before a request goes out on it."""

_NO_RESPONDERS = b"NATS/1.0 503"
_CRLF = b"\r\n"
_PING = b"PING"
_PONG = b"PONG\r\n"
_ERR = b"-ERR"
_MSG = (b"MSG ", b"HMSG ")
_RECV = 256 * 1024
_PUBLISH_DENIED = "permissions violation for publish"
_NOT_SUBSCRIBED = "permissions violation for subscription"
_SERVING = WRITER_SERVING.encode()
_SERVING_SID = 2


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end in this thread; it must never suspend (its I/O blocks)."""
    try:
        suspended_on = coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError(f"a blocking call suspended on {suspended_on!r}")


class BlockingConnection(Requests):
    """Requests over a pool of blocking NATS connections, one per calling thread at a time."""

    def __init__(
        self,
        servers: Sequence[str],
        url: str,
        timeout: float,
        *,
        retry: RetryPolicy | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(url, timeout, retry)
        self._servers = list(servers)
        random.shuffle(self._servers)  # as nats-py does: spread clients over the servers
        self._next_server = 0
        self._tls = tls
        self._inbox_prefix = inbox_prefix_of(self._servers)
        self._idle: list[_Link] = []
        self._lent = 0
        # Every request takes the lock twice; a Condition's own `with` is Python code, the
        # lock's is not: the Condition is only for `close` to wait on.
        self._lock = threading.Lock()
        self._returned = threading.Condition(self._lock)
        self._closed = False

    @classmethod
    def usable(cls, servers: Sequence[str]) -> bool:
        """Whether every server can be reached this way (websocket URLs cannot)."""
        return bool(servers) and all(_scheme(server) in BLOCKING_SCHEMES for server in servers)

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self, drain_s: float = DRAIN_S) -> None:
        """Refuse new requests, wait (bounded) for those in flight, and close every
        connection; one still in use is closed when its request ends."""
        with self._returned:
            self._closed = True
            self._returned.wait_for(lambda: self._lent == 0, timeout=drain_s)
            idle, self._idle = self._idle, []
        for link in idle:
            link.close()

    async def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def _request_once(
        self, subject: str, payload: bytes, decoder: msgspec.msgpack.Decoder[T], write: bool
    ) -> T:
        with self._lock:
            if self._closed:
                raise Unavailable(f"the connection to {self.url} is closing", delivered=False)
            self._lent += 1
        try:
            link = self._borrow()
        except BaseException:
            self._give_back(None)
            raise
        try:
            data = link.request(subject, payload, self.timeout, write)
        except BaseException:
            link.close()  # its state is unknown: a reply may still be on its way
            self._give_back(None)
            raise
        self._give_back(link)
        return decoded(data, decoder)

    def _borrow(self) -> _Link:
        while True:
            with self._lock:
                link = self._idle.pop() if self._idle else None
            if link is None:
                return self._open()
            if link.ready():
                return link
            link.close()

    def _give_back(self, link: _Link | None) -> None:
        """End a request: its connection (None: closed) goes back to the pool."""
        with self._lock:
            self._lent -= 1
            if self._closed:
                self._returned.notify_all()
            if link is not None and not self._closed:
                self._idle.append(link)
                return
        if link is not None:
            link.close()

    def _open(self) -> _Link:
        """A new connection to the next server that takes it."""
        reasons: list[str] = []
        for _ in range(len(self._servers)):
            with self._lock:
                server = self._servers[self._next_server % len(self._servers)]
                self._next_server += 1
            try:
                return _Link.open(
                    server,
                    timeout=self.timeout,
                    tls=self._tls,
                    inbox=f"{self._inbox_prefix}.{secrets.token_hex(8)}",
                )
            except Unauthorized:
                raise
            except (OSError, EOFError, ValueError, Unavailable) as e:
                reasons.append(f"{_redacted(server)}: {e}")
        raise Unavailable(
            f"cannot connect to NATS at {self.url}: {'; '.join(reasons)}",
            url=self.url,
            delivered=False,
        )


class _Link:
    """One NATS connection on a blocking socket, used by one thread at a time."""

    def __init__(self, sock: socket.socket, inbox: str) -> None:
        self._sock = sock
        # What was read and not yet parsed is `_buffer[_start:_end]`; sockets read into the
        # room after it (a fresh 256 kB bytes object per read cost more than the request).
        self._buffer = bytearray(_RECV)
        self._room = memoryview(self._buffer)  # kept: two fewer objects per read
        self._start = 0
        self._end = 0
        self._inbox = inbox
        self._reply_prefix = f"{inbox}.".encode()
        self._sent = 0
        self._used = time.monotonic()
        self.max_payload = 1024 * 1024
        self.hears_leaders = False
        """Whether it hears new writer leaders announce: then its writes go straight to the
        leader (`esdb.leader`), and one still waiting when a leader announces fails at once
        as `Timeout`, as the event-loop client's do (connection.py, `hear_leaders`)."""

    @classmethod
    def open(cls, server: str, *, timeout: float, tls: ssl.SSLContext | None, inbox: str) -> _Link:
        """Connect to `server`, log in, and subscribe to the inbox; `Unauthorized` when the
        server refuses the credentials."""
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        host = parts.hostname or "127.0.0.1"
        deadline = time.monotonic() + max(1.0, timeout)
        sock = socket.create_connection((host, parts.port or DEFAULT_PORT), timeout=timeout)
        link = cls(sock, inbox)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            line = link._line(deadline)
            if not line.startswith(b"INFO "):
                raise Unavailable(f"{_redacted(server)} sent {line[:40]!r} instead of INFO")
            info = json.loads(line[5:])
            link.max_payload = int(info.get("max_payload", link.max_payload))
            if info.get("tls_required"):
                context = tls or ssl.create_default_context()
                link._sock = context.wrap_socket(sock, server_hostname=host)
            link._send(
                b"CONNECT %b\r\nSUB %b.* 1\r\nSUB %b %d\r\nPING\r\n"
                % (
                    _connect_options(parts.username, parts.password),
                    inbox.encode(),
                    _SERVING,
                    _SERVING_SID,
                )
            )
            link.hears_leaders = True
            while (line := link._line(deadline)) != b"PONG":
                if line.startswith(_ERR):
                    if _NOT_SUBSCRIBED in line.decode(errors="replace").lower():
                        link.hears_leaders = False  # credentials from before the subject
                        continue
                    raise _server_error(line, server)
        except BaseException:
            link.close()
            raise
        return link

    def ready(self) -> bool:
        """Whether the connection can take a request: after a long idle time, the PINGs the
        server sent meanwhile are answered, and a connection it closed is noticed."""
        if time.monotonic() - self._used < IDLE_CHECK_S:
            return True
        try:
            self._sock.setblocking(False)
            try:
                while self._receive():
                    pass
                return False  # closed by the server
            except (BlockingIOError, ssl.SSLWantReadError):
                pass
            finally:
                self._sock.setblocking(True)
            return self._handle_buffered()
        except OSError:
            return False

    def _handle_buffered(self) -> bool:
        """Answer the PINGs and skip the announcements already read (between requests, an
        announcement concerns no write of this connection); False on a server error."""
        while (end := self._buffer.find(_CRLF, self._start, self._end)) >= 0:
            line = bytes(self._buffer[self._start : end])
            if line.startswith(_MSG):
                total = int(line.rsplit(b" ", 1)[1])
                if self._end - (end + 2) < total + 2:
                    return True  # its payload is still on its way: the next read skips it
                self._start = end + 2 + total + 2
                continue
            self._start = end + 2
            if line == _PING:
                self._send(_PONG)
            elif line.startswith(_ERR):
                return False
        return True

    def _skip_stale(self) -> None:
        """Read what the server sent since the last request, without waiting for more."""
        self._sock.setblocking(False)
        try:
            while self._receive():
                pass
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        finally:
            self._sock.setblocking(True)
        self._handle_buffered()

    def request(self, subject: str, payload: bytes, timeout: float, write: bool) -> bytearray:
        """Publish `payload` to `subject` and wait for the reply; its payload."""
        size = len(payload)
        if size > self.max_payload:
            raise TooLarge(
                f"the request is {size} bytes; the NATS servers take at most {self.max_payload}",
                limit=self.max_payload,
            )
        self._sent += 1
        reply = b"%b%d" % (self._reply_prefix, self._sent)
        deadline = time.monotonic() + timeout
        straight = leader_subject(subject) if write and self.hears_leaders else None
        try:
            if straight is not None:
                self._skip_stale()
            self._send(
                # No Content-Type header: the servers know a msgpack body by its first byte.
                b"PUB %b %b %d\r\n%b\r\n" % ((straight or subject).encode(), reply, size, payload)
            )
        except OSError as e:
            raise Unavailable(
                f"NATS request to {subject} could not be sent: {e}", delivered=False
            ) from e
        landed = "; the write may have landed" if write else ""
        try:
            while True:
                line = self._line(deadline)
                if line.startswith(_MSG):
                    found = self._message(line, reply, deadline)
                    if found is _LEADER_CHANGED:
                        if straight is not None:
                            raise leader_changed(subject)
                    elif found is not None:
                        self._used = time.monotonic()
                        return found
                elif line == _PING:
                    self._send(_PONG)
                elif line.startswith(_ERR):
                    raise _server_error(line, subject)
        except TimeoutError as e:
            landed = " (the write may still have landed)" if write else ""
            raise Timeout(
                f"no reply to {subject} within {timeout:g} s{landed}", subject=subject
            ) from e
        except (OSError, EOFError) as e:
            raise Unavailable(
                f"the connection to NATS was lost before the reply came{landed}"
            ) from e

    def _message(self, line: bytes, reply: bytes, deadline: float) -> bytearray | None:
        """The payload of the message `line` announces, if it is the reply to `reply`;
        `_LEADER_CHANGED` for a leader's announcement; else None (a late reply to a request
        that timed out, skipped)."""
        fields = line.split(b" ")
        total = int(fields[-1])
        headers = int(fields[-2]) if line.startswith(b"H") else 0
        self._fill(total + 2, deadline)
        start = self._start
        self._start += total + 2
        if fields[1] == _SERVING:
            return _LEADER_CHANGED
        if fields[1] != reply:
            return None
        if headers and self._buffer.startswith(_NO_RESPONDERS, start):
            raise Unavailable("no esdb service answers this request", delivered=False)
        return self._buffer[start + headers : start + total]

    def _line(self, deadline: float) -> bytes:
        while (end := self._buffer.find(_CRLF, self._start, self._end)) < 0:
            self._fill(self._end - self._start + 1, deadline)
        line = bytes(self._buffer[self._start : end])
        self._start = end + 2
        return line

    def _fill(self, count: int, deadline: float) -> None:
        """Read until `count` unparsed bytes are buffered; TimeoutError past `deadline`."""
        while self._end - self._start < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._sock.settimeout(remaining)
            if not self._receive(count):
                raise EOFError("the server closed the connection")

    def _receive(self, count: int = 1) -> int:
        """One read from the socket into the buffer, with room made for `count` unparsed
        bytes, and one more than there are, at least; how many bytes came (0: the server
        closed the connection)."""
        start, end = self._start, self._end
        if start == end:
            start = end = self._start = self._end = 0
        elif count <= end - start:
            count = end - start + 1
        if start + count > len(self._buffer):
            pending = self._buffer[start:end]
            if count > len(self._buffer) - _RECV // 2:
                self._room.release()
                self._buffer = bytearray(max(count + _RECV, 2 * len(self._buffer)))
                self._room = memoryview(self._buffer)
            self._buffer[: len(pending)] = pending
            self._start, self._end = 0, len(pending)
        received = self._sock.recv_into(self._room[self._end :])
        self._end += received
        return received

    def _send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close(self) -> None:
        self._room.release()
        with contextlib.suppress(OSError):
            self._sock.close()


_LEADER_CHANGED = bytearray(b"leader changed")
"""What `_Link._message` returns for a leader's announcement (compared by identity)."""


def _connect_options(user: str | None, password: str | None) -> bytes:
    """The CONNECT options, with the URL's credentials as nats-py sends them."""
    options: dict[str, Any] = {
        "verbose": False,
        "pedantic": False,
        "lang": "python3",
        "version": "esdb",
        "protocol": 1,
        "headers": True,
        "no_responders": True,
        "name": "esdb-client",
    }
    if user is not None and password is None:
        options["auth_token"] = user
    elif user is not None:
        options["user"] = user
        options["pass"] = password
    return json.dumps(options).encode()


def _server_error(line: bytes, what: str) -> Exception:
    """The error a `-ERR` line from the server stands for."""
    text = line[len(_ERR) :].strip().strip(b"'").decode(errors="replace")
    lowered = text.lower()
    if lowered.startswith(_PUBLISH_DENIED):
        return Unauthorized(f"this credential may not publish to {what}", subject=what)
    if "authorization" in lowered or "authentication" in lowered:
        return Unauthorized(f"the NATS server refused the credentials: {text}")
    return Unavailable(f"the NATS server closed the connection: {text}")


def _scheme(server: str) -> str:
    return urlsplit(server).scheme.lower() if "://" in server else "nats"


def _redacted(server: str) -> str:
    parts = urlsplit(server if "://" in server else f"nats://{server}")
    return f"{parts.scheme}://{parts.hostname}:{parts.port or DEFAULT_PORT}"
