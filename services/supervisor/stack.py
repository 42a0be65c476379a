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

from esdb.contracts.api import ClusterStatus, Health
from esdb.contracts.subjects import SYSTEM_STORE, Op, api_subject
from esdb.services.supervisor.auth import (
    ADMIN_USER,
    SERVICE_USER,
    AuthRegistry,
    with_credentials,
)
from esdb.services.supervisor.children import Child
from esdb.services.supervisor.nats_server import (
    HOST,
    Security,
    ServerSpec,
    free_port,
    nats_server_binary,
    write_server_config,
)
from esdb.services.supervisor.preflight import (
    check_external_nats,
    check_ports_free,
    lock_data_dir,
    wait_listening,
)
from esdb.shared.nats_connection import tls_context
from esdb.shared.settings import Settings, SettingsError, load_settings, settings_environ

log = logging.getLogger("esdb.supervisor")

NODE_SERVICES = ("writer", "reader", "emitter", "subscription", "snapshot", "scavenger")
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
    # Per node (tests of network faults): the address its nats-server listens on (default
    # loopback), and a network namespace its server, writer and reader run in (`ip netns exec`).
    node_hosts: tuple[str, ...] = ()
    node_netns: tuple[str, ...] = ()
    # `--auth`: users and per-store permissions (auth.py); `--tls-*`: TLS on every connection.
    auth: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None


def node_id(index: int) -> str:
    """The id of the `index`-th node (1-based)."""
    return f"node{index}"


def server_specs(
    nodes: int, first_port: int, hosts: tuple[str, ...] = (), *, tls: bool = False
) -> tuple[ServerSpec, ...]:
    """One nats-server per node on consecutive client ports (on `hosts[i]`, else loopback);
    routes only in a cluster."""
    return tuple(
        ServerSpec(
            name=f"esdb-{node_id(i)}",
            port=first_port + i - 1,
            cluster_port=free_port() if nodes > 1 else None,
            host=hosts[i - 1] if hosts else HOST,
            tls=tls,
        )
        for i in range(1, nodes + 1)
    )


def _check_per_node(options: StackOptions) -> None:
    for name, values in (("node_hosts", options.node_hosts), ("node_netns", options.node_netns)):
        if values and len(values) != options.nodes:
            raise SystemExit(f"esdb up: {name} needs one entry per node ({options.nodes})")
        if values and options.nats_url is not None:
            raise SystemExit(f"esdb up: {name} places the stack's own servers, not --nats-url")
    if options.node_netns and shutil.which("ip") is None:
        raise SystemExit("esdb up: node_netns needs `ip` (iproute2)")


async def wait_healthy(url: str, timeout: float, nodes: int = 1, tls_ca_file: str = "") -> Health:
    """Poll until `_sys.health` reports `ok` and all `nodes` writers answer."""
    deadline = time.monotonic() + timeout
    nc = await nats.connect(
        url.split(","), max_reconnect_attempts=-1, tls=tls_context(url, tls_ca_file)
    )
    last: Health | None = None
    try:
        while time.monotonic() < deadline:
            try:
                reply = await nc.request(api_subject(SYSTEM_STORE, Op.HEALTH), b"{}", timeout=2)
                last = msgspec.json.decode(reply.data, type=Health)
                if last.status == "ok":
                    reply = await nc.request(
                        api_subject(SYSTEM_STORE, Op.CLUSTER_STATUS), b"{}", timeout=2
                    )
                    status = msgspec.json.decode(reply.data, type=ClusterStatus)
                    if len(status.nodes) >= nodes:
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
        _check_per_node(options)
        self.options = options
        try:
            self.base_settings = load_settings()
        except SettingsError as e:
            raise SystemExit(f"esdb up: invalid configuration: {e}") from e
        self.data_dir = options.data_dir.resolve()
        self.run_dir = self.data_dir / "run"
        self.servers: list[Child] = []
        self.services: list[Child] = []
        self.http_url_files: list[Path] = []
        """Where each service process writes its HTTP endpoint."""
        self.specs: tuple[ServerSpec, ...] = ()
        self.security = self._security()
        if options.nats_url is None:
            self.specs = server_specs(
                options.nodes,
                options.nats_port or 4222,
                options.node_hosts,
                tls=self.security.tls,
            )
            self.node_urls = [spec.url for spec in self.specs]
            self._plan_servers(self.specs)
        else:
            self.node_urls = [options.nats_url]
        self.url = ",".join(self.node_urls)
        """The public URL (no credentials)."""
        self.service_credentials = ""
        if options.auth:
            self.service_credentials = self._registry.ensure_builtin()[SERVICE_USER]
        self.tls_ca_file = str(options.tls_ca.resolve()) if options.tls_ca else ""
        self._plan_services()

    def _security(self) -> Security:
        options = self.options
        if (options.tls_cert is None) != (options.tls_key is None):
            raise SystemExit("esdb up: --tls-cert and --tls-key go together")
        if (options.auth or options.tls_cert) and options.nats_url is not None:
            raise SystemExit("esdb up: --auth and --tls-* configure the stack's own servers")
        self._registry = AuthRegistry(self.data_dir)
        return Security(
            auth_config=self._registry.config_path if options.auth else None,
            tls_cert=options.tls_cert.resolve() if options.tls_cert else None,
            tls_key=options.tls_key.resolve() if options.tls_key else None,
            tls_ca=options.tls_ca.resolve() if options.tls_ca else None,
        )

    def _service_url(self, url: str) -> str:
        """How esdb's own processes connect: with the service credentials under `--auth`."""
        if not self.service_credentials:
            return url
        return with_credentials(url, self.service_credentials)

    def _plan_servers(self, specs: tuple[ServerSpec, ...]) -> None:
        work_dir = self.data_dir / "nats"
        for index, spec in enumerate(specs, 1):
            config = write_server_config(
                spec,
                work_dir=work_dir / node_id(index),
                durability=self.options.durability,
                peers=specs,
                security=self.security,
            )
            self.servers.append(
                Child(
                    name=f"nats-server-{node_id(index)}",
                    argv=self._in_node_netns(index, [nats_server_binary(), "-c", str(config)]),
                    env={},
                    pid_file=self.run_dir / f"nats-server-{node_id(index)}.pid",
                    log_file=work_dir / f"{node_id(index)}.log",
                )
            )

    def _settings(self, index: int, nats_url: str) -> Settings:
        """A node's settings: the `ESDB_*` environment, with what the stack decides over it."""
        return msgspec.structs.replace(
            self.base_settings,
            nats_url=self._service_url(nats_url),
            tls_ca_file=self.tls_ca_file,
            data_dir=self.data_dir / node_id(index),
            node_id=node_id(index),
            durability=self.options.durability,
            replicas=self.options.nodes,
            log_level=self.options.log_level,
        )

    def _plan_services(self) -> None:
        for index, url in enumerate(self.node_urls, 1):
            settings = self._settings(index, url)
            for offset, service in enumerate(NODE_SERVICES, 1):
                name = f"{service}-{node_id(index)}"
                port = self._metrics_port(offset + (index - 1) * len(NODE_SERVICES))
                env = settings_environ(self._with_endpoint(settings, name, port))
                self.services.append(self._child(name, service, env, node=index))
        gateway = self._with_endpoint(self._settings(1, self.url), "gateway", self._metrics_port(0))
        self.services.append(self._child("gateway", "gateway", settings_environ(gateway)))

    def _with_endpoint(self, settings: Settings, name: str, port: int) -> Settings:
        """`settings` for the process `name`, which serves /metrics, /healthz and /readyz on
        `port` (0: one the system picks) and writes where to `<data-dir>/run/<name>.http`:
        a port picked here could be taken, even as a connection's source port, before the
        process binds it."""
        url_file = self.run_dir / f"{name}.http"
        self.http_url_files.append(url_file)
        return msgspec.structs.replace(settings, metrics_port=port, http_url_file=str(url_file))

    def _metrics_port(self, offset: int) -> int:
        """A process's `/metrics` port: `ESDB_METRICS_PORT` + `offset` when the port is set
        (the gateway 0, then each node's services in turn), else 0 (any)."""
        base = self.base_settings.metrics_port
        return base + offset if base else 0

    def _clear_http_urls(self) -> None:
        """Forget the endpoints of an earlier run: each process writes its own once it
        listens."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for url_file in self.http_url_files:
            url_file.unlink(missing_ok=True)

    async def _wait_http_urls(self) -> None:
        """Wait until every process has written where it serves, so `ready` means the
        `run/*.http` files are there for tools."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        missing = list(self.http_url_files)
        while missing := [path for path in missing if not path.exists()]:
            if time.monotonic() > deadline:
                raise SystemExit(f"esdb up: no endpoint written to {missing[0]}")
            await asyncio.sleep(0.05)

    def _child(
        self, name: str, service: str, env: dict[str, str], *, node: int | None = None
    ) -> Child:
        argv = [sys.executable, "-m", f"esdb.services.{service}"]
        return Child(
            name=name,
            argv=argv if node is None else self._in_node_netns(node, argv),
            env=env,
            pid_file=self.run_dir / f"{name}.pid",
        )

    def _in_node_netns(self, index: int, argv: list[str]) -> list[str]:
        """`argv` run inside the network namespace of node `index`, if it has one. `ip netns
        exec` execs the command in place, so the pid (and its signals) stay the command's."""
        if not self.options.node_netns:
            return argv
        return ["ip", "netns", "exec", self.options.node_netns[index - 1], *argv]

    def _forget_previous_run(self) -> None:
        """In memory mode the log does not outlive nats-server, so neither may node state."""
        for index in range(1, self.options.nodes + 1):
            shutil.rmtree(self.data_dir / node_id(index), ignore_errors=True)
            shutil.rmtree(self.data_dir / "nats" / node_id(index) / "jetstream", ignore_errors=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Start everything, print `ready`, and stop it all cleanly when `stop` is set."""
        lock = lock_data_dir(self.data_dir)
        if not self.options.node_netns:  # those addresses exist inside the namespaces only
            check_ports_free(self.specs)
        if self.options.nats_url is not None:
            url = self._service_url(self.url)
            await check_external_nats(url, self.url, tls_context(url, self.tls_ca_file))
        if self.options.durability == "memory" and self.servers:
            self._forget_previous_run()
        stopping = asyncio.Event()
        supervised: list[asyncio.Task[None]] = []
        try:
            for server in self.servers:
                await server.start()
                supervised.append(asyncio.create_task(server.supervise(stopping)))
            for server, spec in zip(self.servers, self.specs, strict=True):
                await wait_listening(server, spec)
            self._clear_http_urls()
            for child in self.services:
                await child.start()
                supervised.append(asyncio.create_task(child.supervise(stopping)))
            healthy = asyncio.create_task(
                wait_healthy(
                    self._service_url(self.url),
                    timeout=READY_TIMEOUT_S,
                    nodes=self.options.nodes,
                    tls_ca_file=self.tls_ca_file,
                )
            )
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({healthy, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if healthy.done():
                healthy.result()  # raises if the stack never became healthy
                await self._wait_http_urls()
                print(f"esdb ready on {self.url} (data in {self.data_dir})", flush=True)
                if self.options.auth:
                    admin = self._registry.dir / f"{ADMIN_USER}.creds"
                    print(f"esdb admin credentials (user:password) in {admin}", flush=True)
                await stop.wait()
            else:
                healthy.cancel()
        finally:
            stopping.set()
            # The gateway first (no new requests), then the nodes, then NATS.
            for child in reversed(self.services):
                await child.stop()
            for server in reversed(self.servers):
                await server.stop()
            for task in supervised:
                task.cancel()
            self._clear_http_urls()
            lock.release()
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
