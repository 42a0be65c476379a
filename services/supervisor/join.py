"""`--join`: the members a node's nats-server routes to, from addresses and DNS names."""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)


def split_member(member: str, default_port: int) -> tuple[str, int]:
    """`ADDR[:PORT]` as (address, port); `[v6]:port` for IPv6 addresses with a port."""
    if member.startswith("["):
        host, _, rest = member[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if member.count(":") == 1:
        host, port = member.split(":")
        return host, int(port)
    return member, default_port


def _addresses(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (a name of several members gives them all), or the
    name itself when it does not resolve yet: nats-server keeps resolving it, so a member
    whose DNS entry appears later is still found."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        log.warning("--join %s does not resolve yet (%s); nats-server will keep trying", host, e)
        return [host]
    found: list[str] = []
    for family, *_, address in infos:
        text = str(address[0])
        if family == socket.AF_INET6:
            text = f"[{text}]"
        if text not in found:
            found.append(text)
    return found


def route_addresses(join: tuple[str, ...], default_port: int) -> tuple[str, ...]:
    """The `host:port` route of every member `join` names, resolved; any one reachable member
    is enough, route gossip finds the rest. This node's own address may be among them:
    nats-server ignores a route to itself, and a clustered JetStream will not start without a
    route, even on the first node of a cluster that waits for the others."""
    routes: list[str] = []
    for member in join:
        host, port = split_member(member, default_port)
        for address in _addresses(host, port):
            route = f"{address}:{port}"
            if route not in routes:
                routes.append(route)
    return tuple(routes)
