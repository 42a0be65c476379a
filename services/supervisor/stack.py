"""The embedded stack behind `esdb up`: per node a nats-server, a writer and a reader, plus
one gateway; every process supervised."""

from __future__ import annotations

import asyncio
import logging
import shutil
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
from esdb.services.supervisor.nats_server import (
    ServerSpec,
    free_port,
    nats_server_binary,
    wait_for_port,
    write_server_config,
)
from esdb.shared.settings import Settings, settings_environ

log = logging.getLogger("esdb.supervisor")

NODE_SERVICES = ("writer", "reader")
CLUSTER_SIZES = (1, 3, 5)
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class StackOptions:
    """What `esdb up` was asked for."""

    data_dir: Path
    durability: str = "fsync"
    nodes: int = 1
    nats_port: int | None = None
    nats_url: str | None = None
    log_level: str = "INFO"


def node_id(index: int) -> str:
    """The id of the `index`-th node (1-based)."""
    return f"node{index}"


def server_specs(nodes: int, first_port: int) -> tuple[ServerSpec, ...]:
    """One nats-server per node on consecutive client ports; routes only in a cluster."""
    return tuple(
        ServerSpec(
            name=f"esdb-{node_id(i)}",
            port=first_port + i - 1,
            cluster_port=free_port() if nodes > 1 else None,
        )
        for i in range(1, nodes + 1)
    )


async def wait_healthy(url: str, timeout: float) -> Health:
    """Poll `_sys.health` until it reports `ok`."""
    deadline = time.monotonic() + timeout
    nc = await nats.connect(url.split(","), max_reconnect_attempts=-1)
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


class Stack:
    """The processes of one `esdb up`, in start order."""

    def __init__(self, options: StackOptions) -> None:
        if options.nodes not in CLUSTER_SIZES:
            raise SystemExit(f"esdb up: --nodes must be one of {CLUSTER_SIZES}")
        if options.nats_url is not None and options.nodes != 1:
            raise SystemExit("esdb up: --nats-url runs one node; a cluster brings its servers")
        self.options = options
        self.data_dir = options.data_dir.resolve()
        self.run_dir = self.data_dir / "run"
        self.servers: list[Child] = []
        self.services: list[Child] = []
        if options.nats_url is None:
            specs = server_specs(options.nodes, options.nats_port or 4222)
            self.node_urls = [spec.url for spec in specs]
            self._plan_servers(specs)
        else:
            self.node_urls = [options.nats_url]
        self.url = ",".join(self.node_urls)
        self._plan_services()

    def _plan_servers(self, specs: tuple[ServerSpec, ...]) -> None:
        work_dir = self.data_dir / "nats"
        for index, spec in enumerate(specs, 1):
            config = write_server_config(
                spec,
                work_dir=work_dir / node_id(index),
                durability=self.options.durability,
                peers=specs,
            )
            self.servers.append(
                Child(
                    name=f"nats-server-{node_id(index)}",
                    argv=[nats_server_binary(), "-c", str(config)],
                    env={},
                    pid_file=self.run_dir / f"nats-server-{node_id(index)}.pid",
                    log_file=work_dir / f"{node_id(index)}.log",
                )
            )

    def _settings(self, index: int, nats_url: str) -> Settings:
        return Settings(
            nats_url=nats_url,
            data_dir=self.data_dir / node_id(index),
            node_id=node_id(index),
            durability=self.options.durability,
            replicas=self.options.nodes,
            log_level=self.options.log_level,
            lease_ttl_s=1.5,
        )

    def _plan_services(self) -> None:
        for index, url in enumerate(self.node_urls, 1):
            env = settings_environ(self._settings(index, url))
            for service in NODE_SERVICES:
                self.services.append(self._child(f"{service}-{node_id(index)}", service, env))
        gateway_env = settings_environ(self._settings(1, self.url))
        self.services.append(self._child("gateway", "gateway", gateway_env))

    def _child(self, name: str, service: str, env: dict[str, str]) -> Child:
        return Child(
            name=name,
            argv=[sys.executable, "-m", f"esdb.services.{service}"],
            env=env,
            pid_file=self.run_dir / f"{name}.pid",
        )

    def _forget_previous_run(self) -> None:
        """In memory mode the log does not outlive nats-server, so neither may node state."""
        for index in range(1, self.options.nodes + 1):
            shutil.rmtree(self.data_dir / node_id(index), ignore_errors=True)
            shutil.rmtree(self.data_dir / "nats" / node_id(index) / "jetstream", ignore_errors=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Start everything, print `ready`, and stop it all cleanly when `stop` is set."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.options.durability == "memory" and self.servers:
            self._forget_previous_run()
        stopping = asyncio.Event()
        supervised: list[asyncio.Task[None]] = []
        try:
            for server in self.servers:
                await server.start()
                supervised.append(asyncio.create_task(server.supervise(stopping)))
            for url in self.node_urls if self.servers else []:
                await wait_for_port(int(url.rsplit(":", 1)[1]))
            for child in self.services:
                await child.start()
                supervised.append(asyncio.create_task(child.supervise(stopping)))
            await wait_healthy(self.url, timeout=READY_TIMEOUT_S)
            print(f"esdb ready on {self.url} (data in {self.data_dir})", flush=True)
            await stop.wait()
        finally:
            stopping.set()
            # The gateway first (no new requests), then the nodes, then NATS.
            for child in reversed(self.services):
                await child.stop()
            for server in reversed(self.servers):
                await server.stop()
            for task in supervised:
                task.cancel()
            print("esdb stopped", file=sys.stderr, flush=True)


async def run_stack(options: StackOptions, stop: asyncio.Event) -> None:
    """Run the stack described by `options` until `stop` is set."""
    await Stack(options).run(stop)


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
