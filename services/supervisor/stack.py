"""The stack behind `esdb up`: per node a nats-server (unless `--nats-url`), the node's
services and a gateway, every process supervised. One machine runs `--nodes N` such nodes;
a cluster across machines runs one per host (`--node-id --host --join`), built by the same
per-node code."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import nats
from nats.aio.client import Client as NatsClient

from esdb.contracts.api import ClusterStatus, Health
from esdb.contracts.subjects import (
    CLUSTER_STREAMS,
    STEP_DOWN_TIMEOUT_S,
    SYSTEM_STORE,
    Op,
    api_subject,
    server_name,
    writer_step_down_subject,
)
from esdb.services.supervisor.auth import (
    ADMIN_USER,
    SERVICE_USER,
    AuthRegistry,
    with_credentials,
)
from esdb.services.supervisor.children import Child
from esdb.services.supervisor.join import route_addresses
from esdb.services.supervisor.nats_server import (
    DEFAULT_NATS_PORT,
    HOST,
    Security,
    ServerSpec,
    free_port,
    nats_server_binary,
    system_password,
    system_user_file,
    write_server_config,
)
from esdb.services.supervisor.preflight import (
    check_external_nats,
    check_node_id_free,
    check_ports_free,
    check_ui_port_free,
    lock_data_dir,
    member_urls,
    wait_listening,
)
from esdb.shared.nats_connection import connect_once, tls_context
from esdb.shared.settings import Settings, SettingsError, load_settings, settings_environ

log = logging.getLogger("esdb.supervisor")

NODE_SERVICES = (
    "writer",
    "reader",
    "emitter",
    "subscription",
    "snapshot",
    "scavenger",
    "projection",
)
CLUSTER_SIZES = (1, 3, 5)
READY_TIMEOUT_S = 120.0
DEFAULT_CLUSTER_PORT = 6222
CLUSTER_REPLICAS = 3
"""The replica count of a node started with `--node-id` when none is given."""
STREAM_LEADER_STEP_DOWN = "$JS.API.STREAM.LEADER.STEPDOWN.{}"
WAITING_NOTE_EVERY_S = 30.0
DEFAULT_UI_PORT = 2113
UI_URL_FILE = "ui.url"
"""Where in `<data-dir>/run/` the UI writes the address it serves on, once it listens."""


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
    # One node of a cluster across machines (`--node-id`): its id, the address its nats-server
    # listens on, the members it routes to, its route port, and the cluster's replica count.
    node_id: str | None = None
    host: str = HOST
    join: tuple[str, ...] = ()
    cluster_port: int = DEFAULT_CLUSTER_PORT
    replicas: int | None = None
    # The admin web UI (`--ui-host`, `--ui-port`, `--no-ui`): one per `esdb up`, as the gateway.
    ui: bool = True
    ui_host: str = HOST
    ui_port: int = DEFAULT_UI_PORT

    @property
    def per_host(self) -> bool:
        """Whether this `esdb up` runs one named node of a cluster across machines."""
        return self.node_id is not None

    @property
    def replica_count(self) -> int:
        """JetStream replicas of the log, the lease and the image store."""
        if self.replicas is not None:
            return self.replicas
        if self.per_host and self.nats_url is None:
            return CLUSTER_REPLICAS
        return self.nodes


@dataclass
class NodePlan:
    """One node of the stack: its id, the URL its services use, its nats-server (none on
    `--nats-url`), and its service processes."""

    node_id: str
    url: str
    spec: ServerSpec | None = None
    server: Child | None = None
    services: list[Child] = field(default_factory=list)


def node_id(index: int) -> str:
    """The id of the `index`-th node (1-based)."""
    return f"node{index}"


def server_specs(
    nodes: int, first_port: int, hosts: tuple[str, ...] = (), *, tls: bool = False
) -> tuple[ServerSpec, ...]:
    """One nats-server per node on consecutive client ports (on `hosts[i]`, else loopback);
    routes only in a cluster."""
    specs = [
        ServerSpec(
            name=server_name(node_id(i)),
            port=first_port + i - 1,
            cluster_port=free_port() if nodes > 1 else None,
            host=hosts[i - 1] if hosts else HOST,
            tls=tls,
        )
        for i in range(1, nodes + 1)
    ]
    routes = tuple(f"{spec.host}:{spec.cluster_port}" for spec in specs if spec.cluster_port)
    return tuple(dataclasses.replace(spec, routes=routes) for spec in specs)


def _check_options(options: StackOptions) -> None:
    if options.nodes not in CLUSTER_SIZES:
        raise SystemExit(f"esdb up: --nodes must be one of {CLUSTER_SIZES}")
    if options.replica_count not in CLUSTER_SIZES:
        raise SystemExit(f"esdb up: --replicas must be one of {CLUSTER_SIZES}")
    if options.nats_url is not None and options.nodes != 1:
        raise SystemExit("esdb up: --nats-url runs one node; a cluster brings its servers")
    if options.per_host:
        if options.nodes != 1:
            raise SystemExit(
                "esdb up: --node-id runs one node of a cluster across machines; "
                "--nodes N is the one-machine shortcut"
            )
        if options.auth and options.join:
            raise SystemExit(
                "esdb up: --auth is not supported across machines yet (each host would keep "
                "users of its own); run the cluster without it inside a private network"
            )
    elif options.join:
        raise SystemExit("esdb up: --join needs --node-id (this host's node)")
    if options.join and options.nats_url is not None:
        raise SystemExit(
            "esdb up: --join routes the nats-server esdb up starts; with --nats-url your own "
            "servers route each other"
        )
    for name, values in (("node_hosts", options.node_hosts), ("node_netns", options.node_netns)):
        if values and len(values) != options.nodes:
            raise SystemExit(f"esdb up: {name} needs one entry per node ({options.nodes})")
        if values and (options.nats_url is not None or options.per_host):
            raise SystemExit(f"esdb up: {name} places the servers of --nodes, nothing else")
    if options.node_netns and shutil.which("ip") is None:
        raise SystemExit("esdb up: node_netns needs `ip` (iproute2)")


_health = msgspec.json.Decoder(Health)
_cluster_status = msgspec.json.Decoder(ClusterStatus)


def _caught_up(status: ClusterStatus, node_ids: tuple[str, ...], target: int) -> bool:
    by_id = {node.node_id: node for node in status.nodes}
    return all(
        (node := by_id.get(wanted)) is not None
        and node.applied_sequence >= target
        and not node.stalled
        for wanted in node_ids
    )


async def wait_ready(
    url: str,
    node_ids: tuple[str, ...],
    *,
    timeout: float | None,
    tls_ca_file: str = "",
) -> Health:
    """Poll until `_sys.health` reports `ok` (a writer leads and a reader answers) and each
    of `node_ids` has applied the log as far as the leader had when the leader was first
    seen; no `timeout` waits for as long as it takes, saying what it waits for."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    next_note = loop.time() + WAITING_NOTE_EVERY_S
    nc = await nats.connect(
        url.split(","), max_reconnect_attempts=-1, tls=tls_context(url, tls_ca_file)
    )
    last: Health | None = None
    target: int | None = None
    try:
        while deadline is None or loop.time() < deadline:
            try:
                reply = await nc.request(api_subject(SYSTEM_STORE, Op.HEALTH), b"{}", timeout=2)
                last = _health.decode(reply.data)
                if last.status == "ok":
                    reply = await nc.request(
                        api_subject(SYSTEM_STORE, Op.CLUSTER_STATUS), b"{}", timeout=2
                    )
                    status = _cluster_status.decode(reply.data)
                    leader = {n.node_id: n for n in status.nodes}.get(status.leader or "")
                    if target is None and leader is not None:
                        target = leader.applied_sequence
                    if target is not None and _caught_up(status, node_ids, target):
                        return last
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError, msgspec.DecodeError):
                pass
            if loop.time() > next_note:
                next_note += WAITING_NOTE_EVERY_S
                log.info(
                    "waiting for the cluster: a writer leader%s (health: %s)",
                    "" if target is None else f" and node(s) {', '.join(node_ids)} at {target}",
                    last,
                )
            await asyncio.sleep(0.1)
    finally:
        await nc.close()
    raise TimeoutError(f"the stack did not become ready within {timeout} s (last: {last})")


class Stack:
    """The processes of one `esdb up`, in start order."""

    def __init__(self, options: StackOptions) -> None:
        _check_options(options)
        self.options = options
        try:
            self.base_settings = load_settings()
        except SettingsError as e:
            raise SystemExit(f"esdb up: invalid configuration: {e}") from e
        self.data_dir = options.data_dir.resolve()
        self.run_dir = self.data_dir / "run"
        self.http_url_files: list[Path] = []
        """Where each service process writes its HTTP endpoint."""
        self.security = self._security()
        self.nodes = self._plan_nodes()
        self.specs = tuple(plan.spec for plan in self.nodes if plan.spec is not None)
        self.servers = [plan.server for plan in self.nodes if plan.server is not None]
        self.url = ",".join(plan.spec.public_url if plan.spec else plan.url for plan in self.nodes)
        """The public URL (no credentials)."""
        self.service_credentials = ""
        if options.auth:
            self.service_credentials = self._registry.ensure_builtin()[SERVICE_USER]
        self.tls_ca_file = str(options.tls_ca.resolve()) if options.tls_ca else ""
        for index, plan in enumerate(self.nodes, 1):
            self._plan_services(index, plan)
        gateway_url = self.url if len(self.nodes) > 1 else self.nodes[0].url
        gateway = self._with_endpoint(
            self._settings(self.nodes[0], gateway_url), "gateway", self._metrics_port(0)
        )
        if self.servers and not options.auth:
            system_user = str(system_user_file(self.data_dir))
            gateway = msgspec.structs.replace(gateway, system_user_file=system_user)
        self.services = [service for plan in self.nodes for service in plan.services]
        self.services.append(self._child("gateway", "gateway", settings_environ(gateway)))
        self.ui_url_file: Path | None = None
        if options.ui:
            self.services.append(self._ui_child(gateway_url))
        self._refused = asyncio.Event()

    def _ui_child(self, nats_url: str) -> Child:
        """The admin web UI: a client of the public API, beside the gateway; it writes its
        address to `run/ui.url` once it listens (its port may be 0: any)."""
        options = self.options
        settings = self._with_endpoint(
            self._settings(self.nodes[0], nats_url),
            "ui",
            self._metrics_port(1 + len(self.nodes) * len(NODE_SERVICES)),
        )
        settings = msgspec.structs.replace(
            settings, ui=True, ui_host=options.ui_host, ui_port=options.ui_port
        )
        self.ui_url_file = self.run_dir / UI_URL_FILE
        self.http_url_files.append(self.ui_url_file)
        return self._child("ui", "ui", settings_environ(settings))

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

    def _plan_nodes(self) -> list[NodePlan]:
        options = self.options
        tls = self.security.tls
        if options.nats_url is not None:
            return [NodePlan(options.node_id or node_id(1), options.nats_url)]
        if options.node_id is not None:
            spec = ServerSpec(
                name=server_name(options.node_id),
                port=options.nats_port or DEFAULT_NATS_PORT,
                cluster_port=options.cluster_port,
                host=options.host,
                tls=tls,
                routes=route_addresses(options.join, options.cluster_port),
            )
            specs: tuple[ServerSpec, ...] = (spec,)
        else:
            specs = server_specs(
                options.nodes, options.nats_port or DEFAULT_NATS_PORT, options.node_hosts, tls=tls
            )
        plans = []
        for index, spec in enumerate(specs, 1):
            node = options.node_id or node_id(index)
            plan = NodePlan(node, spec.local_url, spec)
            plan.server = self._server(index, plan, spec)
            plans.append(plan)
        return plans

    def _service_url(self, url: str) -> str:
        """How esdb's own processes connect: with the service credentials under `--auth`."""
        if not self.service_credentials:
            return url
        return with_credentials(url, self.service_credentials)

    def _server(self, index: int, plan: NodePlan, spec: ServerSpec) -> Child:
        work_dir = self.data_dir / "nats"
        config = write_server_config(
            spec,
            work_dir=work_dir / plan.node_id,
            durability=self.options.durability,
            security=self.security,
            system_password="" if self.options.auth else system_password(self.data_dir),
        )
        return Child(
            name=f"nats-server-{plan.node_id}",
            argv=self._in_node_netns(index, [nats_server_binary(), "-c", str(config)]),
            env={},
            pid_file=self.run_dir / f"nats-server-{plan.node_id}.pid",
            log_file=work_dir / f"{plan.node_id}.log",
        )

    def _settings(self, plan: NodePlan, nats_url: str) -> Settings:
        """A node's settings: the `ESDB_*` environment, with what the stack decides over it."""
        options = self.options
        host = urlsplit(plan.url).hostname or HOST
        if plan.spec is not None:
            host = plan.spec.host
        return msgspec.structs.replace(
            self.base_settings,
            nats_url=self._service_url(nats_url),
            tls_ca_file=self.tls_ca_file,
            data_dir=self.data_dir / plan.node_id,
            node_id=plan.node_id,
            host=host,
            join=options.join,
            nats_port=urlsplit(plan.url).port or DEFAULT_NATS_PORT,
            cluster_port=options.cluster_port,
            durability=options.durability,
            replicas=options.replica_count,
            log_level=options.log_level,
        )

    def _plan_services(self, index: int, plan: NodePlan) -> None:
        settings = self._settings(plan, plan.url)
        for offset, service in enumerate(NODE_SERVICES, 1):
            name = f"{service}-{plan.node_id}"
            port = self._metrics_port(offset + (index - 1) * len(NODE_SERVICES))
            env = settings_environ(self._with_endpoint(settings, name, port))
            plan.services.append(self._child(name, service, env, node=index))

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
        for plan in self.nodes:
            shutil.rmtree(self.data_dir / plan.node_id, ignore_errors=True)
            shutil.rmtree(self.data_dir / "nats" / plan.node_id / "jetstream", ignore_errors=True)

    async def _preflight(self) -> None:
        options = self.options
        if not options.node_netns:  # those addresses exist inside the namespaces only
            check_ports_free(self.specs)
        if options.ui and options.ui_port:
            check_ui_port_free(options.ui_host, options.ui_port)
        if options.nats_url is not None:
            url = self._service_url(self.url)
            await check_external_nats(url, self.url, tls_context(url, self.tls_ca_file))
        if options.per_host and not options.auth:
            node = self.nodes[0]
            if options.nats_url is not None:
                await check_node_id_free(node.node_id, (options.nats_url,))
            elif node.spec is not None:
                await check_node_id_free(node.node_id, member_urls(node.spec))

    async def run(self, stop: asyncio.Event) -> None:
        """Start everything, print `ready`, and stop it all cleanly when `stop` is set."""
        lock = lock_data_dir(self.data_dir)
        ready = False
        stopping = asyncio.Event()
        supervised: list[asyncio.Task[None]] = []
        try:
            await self._preflight()
            if self.options.durability == "memory" and self.servers:
                self._forget_previous_run()
            for server in self.servers:
                await server.start()
                supervised.append(asyncio.create_task(server.supervise(stopping)))
            for server, spec in zip(self.servers, self.specs, strict=True):
                await wait_listening(server, spec)
            self._clear_http_urls()
            for child in self.services:
                await child.start()
                supervised.append(
                    asyncio.create_task(child.supervise(stopping, on_refused=self._refused.set))
                )
            ready = await self._until_ready(stop)
            if ready:
                print(self._ready_line(), flush=True)
                if self.options.auth:
                    admin = self._registry.dir / f"{ADMIN_USER}.creds"
                    print(f"esdb admin credentials (user:password) in {admin}", flush=True)
                waiters = {asyncio.create_task(e.wait()) for e in (stop, self._refused)}
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
            if self._refused.is_set():
                refused = ", ".join(c.name for c in self.services if c.refused)
                raise SystemExit(f"esdb up: {refused} refused to run (its message is above)")
        finally:
            stopping.set()
            if ready and self.options.per_host and self.options.replica_count > 1:
                await self._hand_over()
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

    async def _until_ready(self, stop: asyncio.Event) -> bool:
        """Wait for the stack to be ready; False if `stop` or a refusal came first."""
        healthy = asyncio.create_task(
            wait_ready(
                self._service_url(",".join(plan.url for plan in self.nodes)),
                tuple(plan.node_id for plan in self.nodes),
                timeout=None if self.options.per_host else READY_TIMEOUT_S,
                tls_ca_file=self.tls_ca_file,
            )
        )
        interrupted = {asyncio.create_task(e.wait()) for e in (stop, self._refused)}
        await asyncio.wait({healthy, *interrupted}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in interrupted:
            waiter.cancel()
        if not healthy.done():
            healthy.cancel()
            return False
        healthy.result()  # raises if the stack never became ready
        await self._wait_http_urls()
        return True

    def _ready_line(self) -> str:
        where = f"data in {self.data_dir}"
        if self.options.per_host:
            where = f"node {self.nodes[0].node_id}, {where}"
        if self.ui_url_file is not None:
            where = f"{where}; ui on {self.ui_url_file.read_text().strip()}"
        return f"esdb ready on {self.url} ({where})"

    async def _hand_over(self) -> None:
        """If this node's writer leads, have it hand leadership to a caught-up follower
        before anything stops, so a planned stop costs writes almost nothing."""
        url = self._service_url(self.nodes[0].url)
        try:
            nc = await connect_once(url, timeout=2, tls=tls_context(url, self.tls_ca_file))
        except (OSError, TimeoutError, nats.errors.Error) as e:
            log.warning("cannot ask the writer to hand over: %s", e)
            return
        try:
            for plan in self.nodes:
                reply = await nc.request(
                    writer_step_down_subject(plan.node_id), b"", timeout=STEP_DOWN_TIMEOUT_S
                )
                log.info("%s: %s", plan.node_id, reply.data.decode())
                await _move_stream_leaders(nc, server_name(plan.node_id))
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as e:
            log.warning("the writer did not hand over (%s); followers take over on expiry", e)
        finally:
            await nc.close()


async def _move_stream_leaders(nc: NatsClient, server: str) -> None:
    """Have JetStream elect other leaders for the cluster's streams `server` leads: stopped
    while leading the log, it left the writer's append in flight to its 5 s timeout (5.6 s
    without acknowledged writes in a rolling restart)."""
    js = nc.jetstream(timeout=STEP_DOWN_TIMEOUT_S)
    for stream in CLUSTER_STREAMS:
        try:
            info = await js.stream_info(stream)
            if info.cluster is not None and info.cluster.leader == server:
                await nc.request(STREAM_LEADER_STEP_DOWN.format(stream), b"", timeout=5)
                log.info("%s no longer leads %s", server, stream)
        except (nats.errors.Error, TimeoutError) as e:
            log.warning("%s still leads %s: %s", server, stream, e)


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
