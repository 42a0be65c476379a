"""Connection strings: `esdb://[user:password@]host[:port][,host2[:port]...][?option=value&...]`,
or plain NATS URLs (`nats://host:4222`, comma-separated for several servers).

Options of an `esdb://` string: `store` (the store to use), `tls` (`true`/`false`: connect
with TLS, as `tls://` NATS URLs do), `tls_ca_file` (a CA bundle to verify the servers with),
`timeout` (seconds per request), `max_retries` and `retry_deadline` (seconds; see
`RetryPolicy`). The port defaults to 4222; user and password go to every NATS server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from esdb.contracts.errors import InvalidRequest

SCHEME = "esdb://"
DEFAULT_PORT = 4222
NATS_SCHEMES = ("nats://", "tls://", "ws://", "wss://")
OPTIONS = ("store", "tls", "tls_ca_file", "timeout", "max_retries", "retry_deadline")

_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class InvalidConnectionString(InvalidRequest, ValueError):
    """A connection string that cannot be used; `details["part"]` is the offending part."""


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """What a connection string says; None where it says nothing."""

    servers: tuple[str, ...]
    """NATS server URLs."""
    display: str
    """The string as it may be shown: any password replaced by `***`."""
    store: str | None = None
    tls: bool = False
    tls_ca_file: str | None = None
    timeout: float | None = None
    max_retries: int | None = None
    retry_deadline: float | None = None


def parse_connection_string(url: str) -> ConnectionSettings:
    """The settings in an `esdb://` string or a (comma-separated) NATS URL; raises
    `InvalidConnectionString` (an `InvalidRequest` and a `ValueError`) naming the bad part."""
    text = url.strip()
    if text[: len(SCHEME)].lower() != SCHEME:
        return _nats_urls(text)
    display = _redacted(text)
    rest = text[len(SCHEME) :]
    if "#" in rest:
        raise _invalid(display, "#" + rest.split("#", 1)[1], "a connection string has no fragment")
    rest, _, query = rest.partition("?")
    hosts_part, _, path = rest.partition("/")
    if path:
        raise _invalid(
            display, "/" + path, "a connection string has no path; give the store as ?store="
        )
    userinfo, at, hosts_part = hosts_part.rpartition("@")
    if at and not userinfo:
        raise _invalid(display, "@", "the user before '@' is empty")
    scheme = "nats://"
    options = _options(display, query)
    tls = _bool(display, options.get("tls"), "tls")
    if tls:
        scheme = "tls://"
    credentials = f"{userinfo}@" if at else ""
    servers = tuple(
        f"{scheme}{credentials}{host}" for host in _hosts(display, hosts_part.split(","))
    )
    return ConnectionSettings(
        servers=servers,
        display=display,
        store=_store(display, options.get("store")),
        tls=tls,
        tls_ca_file=options.get("tls_ca_file") or None,
        timeout=_positive(display, options.get("timeout"), "timeout"),
        max_retries=_count(display, options.get("max_retries"), "max_retries"),
        retry_deadline=_positive(display, options.get("retry_deadline"), "retry_deadline"),
    )


def _nats_urls(text: str) -> ConnectionSettings:
    servers = tuple(server.strip() for server in text.split(",") if server.strip())
    if not servers:
        raise InvalidConnectionString(
            "the connection string is empty; give esdb://host:port or nats://host:port",
            field="url",
            part=text,
        )
    for server in servers:
        scheme = server.split("://", 1)[0].lower() + "://" if "://" in server else None
        if scheme is not None and scheme not in NATS_SCHEMES:
            raise InvalidConnectionString(
                f"unknown scheme {scheme!r} in {server!r}: use esdb:// or a NATS URL "
                f"({', '.join(NATS_SCHEMES)})",
                field="url",
                part=scheme,
            )
    return ConnectionSettings(servers=servers, display=_redacted(text))


def _hosts(display: str, hosts: list[str]) -> list[str]:
    parsed: list[str] = []
    for entry in hosts:
        host = entry.strip()
        if not host:
            raise _invalid(display, entry, "a host is empty (check the commas)")
        name, port = host, str(DEFAULT_PORT)
        closing = host.rfind("]")
        colon = host.rfind(":")
        if colon > closing:
            name, port = host[:colon], host[colon + 1 :]
        if not _HOST.fullmatch(name):
            raise _invalid(display, host, f"{name!r} is not a host name or address")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise _invalid(display, host, f"port {port!r} of {host!r} is not a port number")
        parsed.append(f"{name}:{int(port)}")
    return parsed


def _options(display: str, query: str) -> dict[str, str]:
    options: dict[str, str] = {}
    if not query:
        return options
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError as e:
        raise _invalid(display, "?" + query, f"the options are not key=value pairs ({e})") from e
    for key, value in pairs:
        if key not in OPTIONS:
            raise _invalid(
                display, key, f"unknown option {key!r}; known options: {', '.join(OPTIONS)}"
            )
        if key in options:
            raise _invalid(display, key, f"option {key!r} is given twice")
        options[key] = value
    return options


def _store(display: str, value: str | None) -> str | None:
    if value is not None and not value:
        raise _invalid(display, "store=", "store is empty")
    return value


def _bool(display: str, value: str | None, key: str) -> bool:
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise _invalid(display, f"{key}={value}", f"{key}={value!r} is not true or false")


def _positive(display: str, value: str | None, key: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number > 0 or number == float("inf"):
        raise _invalid(
            display, f"{key}={value}", f"{key}={value!r} is not a positive number of seconds"
        )
    return number


def _count(display: str, value: str | None, key: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise _invalid(display, f"{key}={value}", f"{key}={value!r} is not a whole number >= 0")
    return int(value)


def _invalid(display: str, part: str, reason: str) -> InvalidConnectionString:
    return InvalidConnectionString(
        f"invalid connection string {display!r}: {reason}", field="url", part=part
    )


def _redacted(text: str) -> str:
    """`text` with the password of any `user:password@` (or a bare token) as `***`."""

    def redact(match: re.Match[str]) -> str:
        user, colon, _ = match.group(2).partition(":")
        return f"{match.group(1)}{user}:***@" if colon else f"{match.group(1)}***@"

    return re.sub(r"(://)([^/?#@,]*)@", redact, text)
