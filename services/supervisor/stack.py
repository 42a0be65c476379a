"""The embedded stack behind `esdb up`: nats-server, writer, reader and gateway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import nats

from esdb.contracts.api import Health
from esdb.contracts.subjects import SYSTEM_STORE, Op, api_subject
from esdb.services.supervisor.children import Child
from esdb.services.supervisor.nats_server import free_port, start_nats_server
from esdb.shared.settings import Settings, settings_environ

log = logging.getLogger("esdb.supervisor")

# Started in this order and stopped in reverse: the gateway stops taking requests first.
SERVICES = (
    ("writer", "esdb.services.writer"),
    ("reader", "esdb.services.reader"),
    ("gateway", "esdb.services.gateway"),
)


@dataclass(frozen=True)
class StackOptions:
    """What `esdb up` was asked for."""

    data_dir: Path
    durability: str = "fsync"
    nodes: int = 1
    nats_port: int | None = None
    nats_url: str | None = None
    log_level: str = "INFO"


async def wait_healthy(url: str, timeout: float) -> Health:
    """Poll `_sys.health` until it reports `ok`."""
    deadline = time.monotonic() + timeout
    nc = await nats.connect(url, max_reconnect_attempts=-1)
    last: Health | None = None
    try:
        while time.monotonic() < deadline:
            try:
                reply = await nc.request(api_subject(SYSTEM_STORE, Op.HEALTH), b"{}", timeout=2)
                last = msgspec.json.decode(reply.data, type=Health)
                if last.status == "ok":
                    return last
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError, msgspec.DecodeError):
                pass
            await asyncio.sleep(0.1)
    finally:
        await nc.close()
    raise TimeoutError(f"the stack did not become healthy within {timeout} s (last: {last})")


async def run_stack(options: StackOptions, stop: asyncio.Event) -> None:
    """Start everything, print `ready`, and stop it all cleanly when `stop` is set."""
    if options.nodes != 1:
        raise SystemExit("esdb up: only --nodes 1 is supported in this version")
    data_dir = options.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = None
    url = options.nats_url
    if url is None:
        port = options.nats_port or 4222
        server = await start_nats_server(
            name="esdb-n1",
            port=port,
            work_dir=data_dir / "nats",
            durability=options.durability,
            log_file=data_dir / "nats" / "nats-server.log",
        )
        url = f"nats://127.0.0.1:{port}"
        (data_dir / "run").mkdir(exist_ok=True)
        (data_dir / "run" / "nats-server.pid").write_text(str(server.pid))
    settings = Settings(
        nats_url=url,
        data_dir=data_dir / "node1",
        node_id="node1",
        durability=options.durability,
        log_level=options.log_level,
    )
    env = settings_environ(settings)
    children = [
        Child(name, module, env, data_dir / "run" / f"{name}.pid") for name, module in SERVICES
    ]
    stopping = asyncio.Event()
    supervised = []
    try:
        for child in children:
            await child.start()
            supervised.append(asyncio.create_task(child.supervise(stopping)))
        await wait_healthy(url, timeout=60)
        print(f"esdb ready on {url} (data in {data_dir})", flush=True)
        await stop.wait()
    finally:
        stopping.set()
        for child in reversed(children):
            await child.stop()
        for task in supervised:
            task.cancel()
        if server is not None and server.returncode is None:
            server.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait(), 10)
        print("esdb stopped", file=sys.stderr, flush=True)


def up(options: StackOptions) -> None:
    """Run the stack in the foreground until SIGINT/SIGTERM."""
    logging.basicConfig(
        level=options.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_stack(options, stop)

    asyncio.run(main())


__all__ = ["StackOptions", "free_port", "run_stack", "up", "wait_healthy"]
