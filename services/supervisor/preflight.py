"""What `esdb up` checks before it starts anything, so a mistake fails at once with a clear
message instead of a stack that half works: the data directory is not another stack's, the
ports are free, and an external NATS answers with JetStream."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

import msgspec
import nats.errors
import nats.js.errors

from esdb.contracts.api import NodeStatus
from esdb.contracts.subjects import NODE_STATUS
from esdb.services.supervisor.children import Child
from esdb.services.supervisor.nats_server import ServerSpec, port_is_free, wait_for_port
from esdb.shared.dir_lock import DirLock, DirLocked
from esdb.shared.nats_connection import connect_once, gather_replies

STATUS_WINDOW_S = 0.5
FORMING_S = 60.0
"""How long `--nats-url` waits for a JetStream cluster to elect its meta leader."""
JETSTREAM_FORMING = 10008
"""JetStream's "system temporarily unavailable": a cluster without a meta leader yet."""

log = logging.getLogger(__name__)

STACK_LOCK_FILE = "esdb.lock"
"""Held by the `esdb up` that runs on a data directory (`shared/dir_lock.py`)."""


def lock_data_dir(data_dir: Path) -> DirLock:
    """One stack per data directory: a second one would run its own NATS and writers over
    the same LMDB files, each leading its own cluster. Returns the held lock."""
    lock = DirLock(data_dir / STACK_LOCK_FILE)
    try:
        lock.acquire()
    except DirLocked as e:
        who = f" (pid {e.pid})" if e.pid else ""
        raise SystemExit(
            f"esdb up: {data_dir} is in use by another esdb up{who}; stop it first, "
            "or give this one another --data-dir"
        ) from e
    return lock


def check_ui_port_free(host: str, port: int) -> None:
    """Refuse a UI port something else listens on, rather than start a UI that cannot
    serve and restarts forever."""
    if not port_is_free(host, port):
        raise SystemExit(
            f"esdb up: {host}:{port} (the web UI's port) is already in use; stop what uses "
            "it, choose another --ui-port, or run with --no-ui"
        )


def check_ports_free(specs: tuple[ServerSpec, ...]) -> None:
    """Refuse a port something else listens on (or holds) before starting nats-server: our
    services would otherwise find that other server there and use it."""
    for spec in specs:
        for port, what in ((spec.port, "--nats-port"), (spec.cluster_port, "route")):
            if port is not None and not port_is_free(spec.host, port):
                raise SystemExit(
                    f"esdb up: {spec.host}:{port} ({what} of {spec.name}) is already in use; "
                    "stop what uses it or choose another --nats-port"
                )


async def check_external_nats(
    url: str, shown: str, tls: ssl.SSLContext | None, *, forming_s: float = FORMING_S
) -> None:
    """`--nats-url`: fail at once, not after the ready timeout, on a server that cannot be
    reached or has no JetStream (the log lives there). A JetStream cluster still electing
    its meta leader is waited for, up to `forming_s`. `shown` is `url` without credentials."""
    try:
        nc = await connect_once(url, timeout=5, tls=tls)
    except (OSError, TimeoutError, nats.errors.Error) as e:
        raise SystemExit(f"esdb up: cannot connect to {shown}: {e}") from e
    loop = asyncio.get_running_loop()
    deadline = loop.time() + forming_s
    try:
        while True:
            try:
                await nc.jetstream(timeout=5).account_info()
                return
            except nats.js.errors.ServiceUnavailableError as e:
                if e.err_code != JETSTREAM_FORMING or loop.time() > deadline:
                    raise SystemExit(
                        f"esdb up: {shown} has no JetStream; run nats-server with -js (or a "
                        "`jetstream {}` block in its config)"
                    ) from e
            except (TimeoutError, nats.errors.Error) as e:
                if loop.time() > deadline:
                    raise SystemExit(f"esdb up: JetStream at {shown} does not answer: {e}") from e
            log.info("JetStream at %s is not ready yet (a cluster forming?); waiting", shown)
            await asyncio.sleep(0.5)
    finally:
        await nc.close()


async def wait_listening(server: Child, spec: ServerSpec) -> None:
    """Wait until the nats-server `server` listens on its port, failing if it exits first."""
    waiting = asyncio.create_task(wait_for_port(spec.port, host=spec.host))
    while not waiting.done():
        if server.restarts or server.process is None or server.process.returncode is not None:
            waiting.cancel()
            raise SystemExit(f"esdb up: {server.name} exited at start; see {server.log_file}")
        await asyncio.wait({waiting}, timeout=0.05)
    waiting.result()


def member_urls(spec: ServerSpec) -> tuple[str, ...]:
    """The client URLs of the members `spec` routes to, on its own client port: members of
    one cluster listen for clients on the same port."""
    scheme = "tls" if spec.tls else "nats"
    return tuple(f"{scheme}://{route.rsplit(':', 1)[0]}:{spec.port}" for route in spec.routes)


async def check_node_id_free(node: str, urls: tuple[str, ...]) -> None:
    """Refuse to start a node whose id a live node of the cluster already has: two writers
    of one id would share its lease and status. Asks the first member that answers at
    `urls`; none answering means no cluster to clash with yet."""
    status = msgspec.msgpack.Decoder(NodeStatus)
    for url in urls:
        try:
            nc = await connect_once(url, timeout=1)
        except (OSError, TimeoutError, nats.errors.Error):
            continue
        try:
            replies = await gather_replies(nc, NODE_STATUS, b"", STATUS_WINDOW_S)
        finally:
            await nc.close()
        for reply in replies:
            if status.decode(reply).node_id == node:
                raise SystemExit(
                    f"esdb up: node id {node!r} is already live in the cluster (answered "
                    f"through {url}); give this node an id of its own (--node-id), or stop "
                    "the other one first"
                )
        return
