"""compose/: the Docker Compose stack is the topology `esdb up --nodes 3` builds, and every name
in it (modules, settings, volumes, services, ports, nats-server configs) points at something
real. No Docker needed: the files are parsed and checked against the code."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from esdb.contracts.subjects import SYSTEM_STORE, Op, api_subject, write_mappings
from esdb.services.supervisor.nats_server import nats_server_binary, server_config
from esdb.services.supervisor.stack import (
    CLUSTER_SIZES,
    NODE_SERVICES,
    Stack,
    StackOptions,
    node_id,
)
from esdb.shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
NODES = 3
NODE_IDS = [node_id(i) for i in range(1, NODES + 1)]
CLIENT_PORT = 4222
MONITOR_PORT = 8222
DATA_DIR = "/data"


# ---- parsing ----


def _nats_value(text: str) -> Any:
    if text.startswith("[") and text.endswith("]"):
        return [_nats_value(item.strip()) for item in text[1:-1].split(",") if item.strip()]
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def parse_nats_config(text: str) -> dict[str, Any]:
    """The subset of the nats-server config syntax that compose/nats/*.conf and
    `server_config()` use: one `key: value`, `key {` or `}` per line, `#` comments, one-line
    `[a, b]` lists and double-quoted strings."""
    root: dict[str, Any] = {}
    blocks = [root]
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line == "}":
            blocks.pop()
            assert blocks, f"unbalanced }} in {text!r}"
        elif line.endswith("{"):
            block: dict[str, Any] = {}
            blocks[-1][line[:-1].strip()] = block
            blocks.append(block)
        else:
            key, sep, value = line.partition(":")
            assert sep, f"cannot parse nats config line {raw!r}"
            blocks[-1][key.strip()] = _nats_value(value.strip())
    assert len(blocks) == 1, "unbalanced { in nats config"
    return root


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """What `esdb up --nodes 3` plans (nothing is started; it writes only its configs)."""
    return Stack(StackOptions(data_dir=tmp_path_factory.mktemp("esdb-up"), nodes=NODES))


def nats_name(node: str) -> str:
    return f"nats-server-{node}"


def esdb_services(services: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The services running esdb code (built from compose/Dockerfile)."""
    for name, service in services.items():
        if "build" in service:
            yield name, service


def env(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "environment must be a mapping"
    return {key: str(value) for key, value in environment.items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Mount target -> source (a named volume, or a path for a bind mount)."""
    found: dict[str, str] = {}
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"use the short volume syntax: {entry!r}"
        source, target, *_ = entry.split(":")
        assert target not in found, f"{target} mounted twice"
        found[target] = source
    return found


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def nats_config_path(node: str) -> Path:
    return COMPOSE_DIR / "nats" / f"{node}.conf"


def nats_config(node: str) -> dict[str, Any]:
    return parse_nats_config(nats_config_path(node).read_text())


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Target -> condition."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return {target: "service_started" for target in deps}
    return {target: spec.get("condition", "service_started") for target, spec in deps.items()}


# ---- the topology is `esdb up --nodes 3` ----


def test_node_count_is_a_cluster_size() -> None:
    assert NODES in CLUSTER_SIZES
    assert sorted(p.stem for p in (COMPOSE_DIR / "nats").glob("*.conf")) == NODE_IDS


def test_services_are_the_processes_of_esdb_up(
    services: dict[str, dict[str, Any]], stack: Stack
) -> None:
    expected = {nats_name(node) for node in NODE_IDS}
    expected |= {f"{service}-{node}" for node in NODE_IDS for service in NODE_SERVICES}
    expected.add("gateway")
    assert set(services) == expected
    # The supervisor names its children the same way.
    assert {child.name for child in stack.services} | {c.name for c in stack.servers} == expected


def test_services_run_the_modules_esdb_up_runs(
    services: dict[str, dict[str, Any]], stack: Stack
) -> None:
    planned = {child.name: child.argv[1:] for child in stack.services}
    for name, service in esdb_services(services):
        assert service["command"] == ["python", *planned[name]], name


@pytest.mark.parametrize("service", [*NODE_SERVICES, "gateway"])
def test_service_modules_exist_and_have_main(service: str) -> None:
    module = f"esdb.services.{service}"
    spec = importlib.util.find_spec(module)
    assert spec is not None, module
    if spec.submodule_search_locations is not None:  # a package: `-m` runs its __main__
        module += ".__main__"
        assert importlib.util.find_spec(module) is not None, module
    assert callable(getattr(importlib.import_module(module), "main", None)), module


def test_every_command_names_an_existing_module(services: dict[str, dict[str, Any]]) -> None:
    for name, service in esdb_services(services):
        python, flag, module = service["command"]
        assert (python, flag) == ("python", "-m"), name
        assert module.startswith("esdb.services."), name
        assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"


# ---- settings ----


def test_every_esdb_variable_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    fields = set(Settings.__struct_fields__)
    for name, service in esdb_services(services):
        variables = env(service)
        for variable in variables:
            assert variable.startswith("ESDB_"), f"{name}: {variable}"
            assert variable.removeprefix("ESDB_").lower() in fields, f"{name}: {variable}"
        settings = load_settings(variables)  # the values are valid too
        assert settings.replicas == NODES, name


def test_node_services_match_esdb_up_settings(
    services: dict[str, dict[str, Any]], stack: Stack
) -> None:
    planned = {child.name: child.env for child in stack.services}
    for index, node in enumerate(NODE_IDS):
        for service in NODE_SERVICES:
            name = f"{service}-{node}"
            variables = env(services[name])
            assert variables["ESDB_NODE_ID"] == node == planned[name]["ESDB_NODE_ID"]
            assert variables["ESDB_DATA_DIR"] == DATA_DIR, name
            for same in ("ESDB_REPLICAS", "ESDB_DURABILITY"):
                assert variables[same] == planned[name][same], f"{name}: {same}"
            # Own node's server, as in `esdb up`.
            assert planned[name]["ESDB_NATS_URL"] == stack.specs[index].url
            assert variables["ESDB_NATS_URL"] == f"nats://{nats_name(node)}:{CLIENT_PORT}", name


def test_gateway_connects_to_every_server(
    services: dict[str, dict[str, Any]], stack: Stack
) -> None:
    urls = env(services["gateway"])["ESDB_NATS_URL"].split(",")
    assert urls == [f"nats://{nats_name(node)}:{CLIENT_PORT}" for node in NODE_IDS]
    gateway = next(child for child in stack.services if child.name == "gateway")
    assert len(gateway.env["ESDB_NATS_URL"].split(",")) == len(urls)


def test_node_ids_are_unique_and_consistent(services: dict[str, dict[str, Any]]) -> None:
    ids = []
    for node in NODE_IDS:
        per_node = {env(services[f"{s}-{node}"])["ESDB_NODE_ID"] for s in NODE_SERVICES}
        assert per_node == {node}
        ids.append(node)
    server_names = [nats_config(node)["server_name"] for node in NODE_IDS]
    assert len(set(ids)) == len(set(server_names)) == NODES


# ---- volumes ----


def test_every_volume_is_declared_and_used(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, service in compose["services"].items():
        for source in mounts(service).values():
            if is_bind(source):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} missing"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
                used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"


def test_each_node_shares_one_data_volume(services: dict[str, dict[str, Any]]) -> None:
    owner: dict[str, str] = {}
    for node in NODE_IDS:
        volumes = {mounts(services[f"{s}-{node}"]).get(DATA_DIR) for s in NODE_SERVICES}
        assert len(volumes) == 1, f"{node}: {volumes}"
        (volume,) = volumes
        assert volume is not None and not is_bind(volume), node
        owner[volume] = node
    assert len(owner) == NODES, "nodes share a data volume"
    for name, service in services.items():
        for source in mounts(service).values():
            if source in owner:
                assert name.endswith(f"-{owner[source]}"), f"{name} mounts {source}"


# ---- nats-server configs ----


def test_nats_configs_are_valid_for_nats_server() -> None:
    for node in NODE_IDS:
        result = subprocess.run(
            [nats_server_binary(), "-t", "-c", str(nats_config_path(node))],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_nats_configs_match_what_esdb_up_writes(stack: Stack) -> None:
    for index, node in enumerate(NODE_IDS):
        spec = stack.specs[index]
        ours = nats_config(node)
        theirs = parse_nats_config(
            server_config(spec, store_dir=Path("/x"), durability="fsync")
        )
        assert ours["server_name"] == theirs["server_name"] == f"esdb-{node}"
        assert ours["max_payload"] == theirs["max_payload"]
        assert ours["jetstream"]["sync_interval"] == theirs["jetstream"]["sync_interval"]
        assert ours["jetstream"]["sync_interval"] == "always"
        assert ours["mappings"] == theirs["mappings"]  # writes go straight to the leader
        assert {key.strip('"') for key in ours["mappings"]} == set(write_mappings())
        assert ours["cluster"]["name"] == theirs["cluster"]["name"]
        assert len(ours["cluster"]["routes"]) == len(theirs["cluster"]["routes"]) - 1  # no self
        assert _host_port(ours["listen"])[1] == CLIENT_PORT
        assert int(ours["http"]) == MONITOR_PORT


def test_nats_services_run_their_config_with_jetstream_on_a_volume(
    services: dict[str, dict[str, Any]],
) -> None:
    for node in NODE_IDS:
        service = services[nats_name(node)]
        volumes = mounts(service)
        config_target = service["command"][service["command"].index("--config") + 1]
        assert (COMPOSE_DIR / volumes[config_target]).resolve() == nats_config_path(node)
        store_dir = Path(nats_config(node)["jetstream"]["store_dir"])
        on_volume = [
            source
            for target, source in volumes.items()
            if not is_bind(source) and store_dir.is_relative_to(target)
        ]
        assert len(on_volume) == 1, f"{node}: store_dir {store_dir} not on a named volume"


def test_cluster_routes_reference_the_other_servers(services: dict[str, dict[str, Any]]) -> None:
    cluster_ports = {
        nats_name(node): _host_port(nats_config(node)["cluster"]["listen"])[1] for node in NODE_IDS
    }
    for node in NODE_IDS:
        routes = nats_config(node)["cluster"]["routes"]
        targets = set()
        for route in routes:
            match = re.fullmatch(r"nats-route://([\w.-]+):(\d+)", route)
            assert match, route
            host, port = match[1], int(match[2])
            assert host in services, f"{node}: route to unknown service {host}"
            assert port == cluster_ports[host], f"{node}: {route} is not {host}'s route port"
            targets.add(host)
        assert targets == set(cluster_ports) - {nats_name(node)}, node
    assert len({nats_config(node)["cluster"]["name"] for node in NODE_IDS}) == 1


# ---- ordering, health, ports ----


def test_depends_on_targets_exist_and_order_like_esdb_up(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for target, condition in depends_on(service).items():
            assert target in services, f"{name} depends on unknown {target}"
            assert condition in ("service_started", "service_healthy"), name
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name}: {target} has no healthcheck"
    for node in NODE_IDS:
        assert depends_on(services[f"writer-{node}"]) == {nats_name(node): "service_healthy"}
        for service in NODE_SERVICES[1:]:
            deps = depends_on(services[f"{service}-{node}"])
            assert deps.get(nats_name(node)) == "service_healthy"
            assert f"writer-{node}" in deps
    gateway = depends_on(services["gateway"])
    assert {nats_name(node) for node in NODE_IDS} <= set(gateway)
    # No cycles: every service starts after all it depends on.
    started: set[str] = set()
    while len(started) < len(services):
        ready = {
            n for n, s in services.items() if n not in started and set(depends_on(s)) <= started
        }
        assert ready, f"depends_on cycle among {set(services) - started}"
        started |= ready


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for node in NODE_IDS:
        test = services[nats_name(node)]["healthcheck"]["test"]
        assert f"http://127.0.0.1:{MONITOR_PORT}/healthz" in test
    for name, service in esdb_services(services):
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], name
        tree = ast.parse(test[3])  # a valid one-liner...
        for statement in ast.walk(tree):  # ...whose esdb imports resolve
            if isinstance(statement, ast.Import):
                for alias in statement.names:
                    if alias.name.startswith("esdb"):
                        assert importlib.util.find_spec(alias.name), f"{name}: {alias.name}"
            elif isinstance(statement, ast.ImportFrom) and (statement.module or "").startswith(
                "esdb"
            ):
                module = importlib.import_module(statement.module or "")
                for alias in statement.names:
                    assert hasattr(module, alias.name), f"{name}: {alias.name}"
        if name != "gateway":  # node services: their own /readyz, on the port they serve
            port = env(service)["ESDB_METRICS_PORT"]
            assert f"http://127.0.0.1:{port}/readyz" in test[3], name
    # The gateway's asks `_sys.health` through the supervisor's readiness check.
    assert "wait_ready" in services["gateway"]["healthcheck"]["test"][3]
    assert api_subject(SYSTEM_STORE, Op.HEALTH) == "esdb.api._sys.health"


def test_published_ports_are_unique_and_those_of_esdb_up(
    services: dict[str, dict[str, Any]], stack: Stack
) -> None:
    published: list[int] = []
    for name, service in services.items():
        for entry in service.get("ports", []):
            assert isinstance(entry, str), f'{name}: quote ports as "host:container"'
            host, container = entry.rsplit(":", 1)
            published.append(int(host))
            if name.startswith("nats-server-"):
                assert int(container) == CLIENT_PORT
    assert len(published) == len(set(published)), published
    nats_ports = [int(services[nats_name(n)]["ports"][0].split(":")[0]) for n in NODE_IDS]
    assert nats_ports == [spec.port for spec in stack.specs] == [4222, 4223, 4224]


# ---- the image ----


def test_dockerfile_installs_the_package_with_all_its_sources(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in esdb_services(services):
        build = service["build"]
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == ROOT, name
        assert (context / build["dockerfile"]).resolve() == COMPOSE_DIR / "Dockerfile", name
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert re.search(r"^RUN pip install \.", dockerfile, re.MULTILINE)
    copied = set(re.findall(r"^COPY (\S+)", dockerfile, re.MULTILINE))
    # esdb/ is symlinks to the top-level packages: each target must be in the image.
    for link in (ROOT / "esdb").iterdir():
        if link.is_symlink():
            assert link.resolve().name in copied, f"Dockerfile does not COPY {link.resolve()}"
