"""Who the UI acts as. Without users (a stack started without `--auth`) every browser shares
the UI's own connection. With users, a login opens a NATS connection with that user's name
and password, so the servers themselves check each request against the user's permissions;
a session is a cookie naming that connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import nats
import nats.errors
from nats.aio.client import Client as NatsClient

from esdb.client import Client, EsdbError, Unauthorized, Unavailable
from esdb.client.connection import Connection
from esdb.contracts.api import StoreInfo

log = logging.getLogger(__name__)

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""What `esdb user add` accepts as a name."""
SESSION_IDLE_S = 3600.0
"""A session unused this long is closed (its NATS connection with it)."""
STORES_FRESH_S = 5.0
"""How long a session's list of the stores it may see is reused."""


class LoginFailed(Exception):
    """The user name or password was refused, or no server could be reached."""


def without_credentials(url: str) -> str:
    """Every server of a comma-separated NATS URL without `user:password@`."""
    servers = []
    for server in url.split(","):
        parts = urlsplit(server)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        servers.append(urlunsplit((parts.scheme, netloc, parts.path, "", "")))
    return ",".join(servers)


def with_user(url: str, user: str, password: str) -> str:
    """Every server of `url` with the user's credentials. nats-py takes them from the URL as
    they are, unquoted; a URL splits the last `@` from the host and the first `:` from the
    user, so only `/`, `?` and `#` cannot be in a password (`esdb user add` uses none)."""
    credentials = f"{user}:{password}"
    return ",".join(
        server.replace("://", f"://{credentials}@", 1)
        for server in without_credentials(url).split(",")
    )


def requires_login(url: str) -> bool:
    """Whether the stack has users: its services connect with credentials then."""
    return any(urlsplit(server).username for server in url.split(","))


class Account:
    """One NATS connection, as one user (or as the UI itself): typed requests through the
    esdb client, and the raw connection for live subscriptions."""

    def __init__(self, connection: Connection, user: str | None) -> None:
        self.connection = connection
        self.user = user

    @classmethod
    async def open(
        cls, url: str, user: str | None, *, timeout: float, tls: ssl.SSLContext | None
    ) -> Account:
        """Connect (as the user named in `url`, if any); messages name the servers without
        the credentials."""
        servers = [server.strip() for server in url.split(",") if server.strip()]
        connection = await Connection.open(
            without_credentials(url), timeout=timeout, servers=servers, tls=tls
        )
        return cls(connection, user)

    @property
    def nc(self) -> NatsClient:
        """The NATS connection itself."""
        return self.connection.nc

    def client(self, store: str) -> Client:
        """An esdb client of `store` on this connection (cheap: no new connection)."""
        return Client(self.connection, store)

    async def close(self) -> None:
        """Finish requests in flight and close the connection."""
        with contextlib.suppress(Exception):
            await self.connection.close()


@dataclass
class StoreView:
    """The stores a session may see, and whether it manages them all (`_sys`)."""

    stores: list[StoreInfo]
    admin: bool
    at: float = field(default_factory=time.monotonic)

    @property
    def names(self) -> list[str]:
        """The stores' names."""
        return [info.store for info in self.stores]


@dataclass
class Session:
    """A browser's session: the account it acts as, and a token its forms carry."""

    account: Account
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    last_used: float = field(default_factory=time.monotonic)
    view: StoreView | None = None

    @property
    def user(self) -> str | None:
        """The esdb user (None: no users on this stack)."""
        return self.account.user


class Sessions:
    """Every session of this UI process; `anonymous` when the stack has no users."""

    def __init__(
        self,
        url: str,
        own: Account,
        *,
        timeout: float,
        tls: ssl.SSLContext | None,
        login_required: bool,
    ) -> None:
        self.public_url = without_credentials(url)
        self.own = own
        self.timeout = timeout
        self.tls = tls
        self.login_required = login_required
        self.anonymous = None if login_required else Session(own)
        self._sessions: dict[str, Session] = {}

    def get(self, token: str | None) -> Session | None:
        """The session of a cookie (the shared one without users)."""
        if self.anonymous is not None:
            return self.anonymous
        session = self._sessions.get(token or "")
        if session is not None:
            session.last_used = time.monotonic()
        return session

    async def login(self, user: str, password: str) -> Session:
        """A new session acting as `user`; `LoginFailed` if the servers refuse them."""
        if not user or not password:
            raise LoginFailed("enter a user name and a password")
        if not USER_NAME.fullmatch(user) or any(c in password for c in "/?#"):
            raise LoginFailed("wrong user name or password")
        url = with_user(self.public_url, user, password)
        await self._check_credentials(url)
        try:
            account = await Account.open(url, user, timeout=self.timeout, tls=self.tls)
        except Unavailable as e:
            raise LoginFailed(f"cannot reach the servers: {e.message}") from e
        session = Session(account)
        self._sessions[session.token] = session
        log.info("%s logged in", user)
        return session

    async def _check_credentials(self, url: str) -> None:
        """Connect once, without retrying, to tell a refused password from a server away."""
        try:
            nc = await nats.connect(
                url.split(","),
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=max(1.0, min(self.timeout, 5.0)),
                tls=self.tls,
            )
        except nats.errors.Error as e:
            # The server answers a refused user with `-ERR 'Authorization Violation'`, which
            # nats-py raises as a plain error carrying that text: its only sign.
            if isinstance(e, nats.errors.AuthorizationError) or "authorization" in str(e).lower():
                raise LoginFailed("wrong user name or password") from e
            raise LoginFailed(f"cannot reach the servers: {e}") from e
        except OSError as e:
            raise LoginFailed(f"cannot reach the servers: {e}") from e
        await nc.close()

    async def logout(self, token: str | None) -> None:
        """End a session and close its connection."""
        session = self._sessions.pop(token or "", None)
        if session is not None:
            await session.account.close()

    async def expire_idle(self) -> None:
        """Close the sessions idle for longer than `SESSION_IDLE_S`."""
        now = time.monotonic()
        for token, session in list(self._sessions.items()):
            if now - session.last_used > SESSION_IDLE_S:
                await self.logout(token)

    async def close(self) -> None:
        """Close every session's connection (not the UI's own)."""
        for token in list(self._sessions):
            await self.logout(token)

    async def stores(self, session: Session, *, fresh: bool = False) -> StoreView:
        """The stores `session` may see: every store for an admin (or without users); for a
        tenant, those its own credentials may use, found by asking each as the tenant."""
        view = session.view
        if view is not None and not fresh and time.monotonic() - view.at < STORES_FRESH_S:
            return view
        try:
            stores = await session.account.client("_sys").list_stores()
            view = StoreView(sorted(stores, key=lambda s: s.store), admin=True)
        except Unauthorized:
            every = await self.own.client("_sys").list_stores()
            allowed = await asyncio.gather(*(self._may_use(session, s.store) for s in every))
            mine = [info for info, ok in zip(every, allowed, strict=True) if ok]
            view = StoreView(sorted(mine, key=lambda s: s.store), admin=False)
        session.view = view
        return view

    async def _may_use(self, session: Session, store: str) -> bool:
        try:
            await session.account.client(store).list_streams(limit=1)
        except Unauthorized:
            return False
        except EsdbError:
            return True  # it answered: the servers let the request through
        return True
