"""compose/: three containers, one esdb node each (`esdb up` for that node, configured by
`ESDB_*` settings), and every name in the files (settings, volumes, hosts, ports, the image and
its base, the podman settings) points at something real. No podman needed: the files are parsed
and checked against the code; tests/system/test_compose_stack.py runs them."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from esdb.cli.main import build_parser, up_options
from esdb.services.supervisor.stack import CLUSTER_SIZES, Stack, StackOptions, node_id
from esdb.shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
CONTAINERFILE = COMPOSE_DIR / "Containerfile"
BUILD_SCRIPT = COMPOSE_DIR / "build-image.sh"
NODES = 3
NODE_IDS = [node_id(i) for i in range(1, NODES + 1)]
SERVICES = [f"esdb-{node}" for node in NODE_IDS]
DATA_DIR = "/data"
CLIENT_PORT = 4222
INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


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


def env(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "environment must be a mapping"
    return {key: str(value) for key, value in environment.items()}


def with_defaults(text: str) -> str:
    """`text` with each `${VAR:-default}` replaced by its default, as when VAR is unset."""

    def default(match: re.Match[str]) -> str:
        assert match[2] is not None, f"{match[0]} has no default"
        return match[2]

    return INTERPOLATION.sub(default, text)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Mount target -> source (a named volume, or a path for a bind mount)."""
    found: dict[str, str] = {}
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"use the short volume syntax: {entry!r}"
        source, target, *_ = entry.split(":")
        assert target not in found, f"{target} mounted twice"
        found[target] = source
    return found


def instructions(name: str) -> list[str]:
    """The Containerfile's `name` instructions (continuation lines joined), in order."""
    text = re.sub(r"\\\n\s*", " ", CONTAINERFILE.read_text())
    return re.findall(rf"^{name} (.+)$", text, re.MULTILINE)


# ---- topology: one container per node ----


def test_one_service_per_node_named_as_its_host(services: dict[str, dict[str, Any]]) -> None:
    assert NODES in CLUSTER_SIZES
    assert list(services) == SERVICES
    for name, service in services.items():
        assert service["hostname"] == name


def test_each_node_has_its_own_id(services: dict[str, dict[str, Any]]) -> None:
    assert [env(s)["ESDB_NODE_ID"] for s in services.values()] == NODE_IDS


def test_every_esdb_variable_is_a_valid_setting(services: dict[str, dict[str, Any]]) -> None:
    fields = set(Settings.__struct_fields__)
    for name, service in services.items():
        variables = env(service)
        for variable in variables:
            assert variable.startswith("ESDB_"), f"{name}: {variable}"
            assert variable.removeprefix("ESDB_").lower() in fields, f"{name}: {variable}"
        settings = load_settings(variables)  # the values are valid too
        assert settings.replicas == NODES, name
        assert settings.durability == "fsync", name
        assert str(settings.data_dir) == DATA_DIR, name


def test_nodes_differ_only_in_id_volume_and_port(services: dict[str, dict[str, Any]]) -> None:
    def shared(service: dict[str, Any]) -> dict[str, Any]:
        rest = {k: v for k, v in service.items() if k not in ("hostname", "volumes", "ports")}
        rest["environment"] = {k: v for k, v in env(service).items() if k != "ESDB_NODE_ID"}
        return rest

    first, *others = services.values()
    for other in others:
        assert shared(other) == shared(first)


def test_each_node_runs_esdb_up_for_itself_joined_to_every_service(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, service in services.items():
        with monkeypatch.context() as patched:
            for variable, value in env(service).items():
                patched.setenv(variable, value)
            options = up_options(build_parser().parse_args(["up"]))  # the image's CMD
        assert options.per_host and options.node_id == env(service)["ESDB_NODE_ID"], name
        assert options.host == "0.0.0.0", f"{name}: listen where the other containers reach"
        # Every member by its host name, its own included: one list for all three.
        assert options.join == tuple(services), name
        assert options.replica_count == NODES, name
        assert options.data_dir == Path(DATA_DIR), name


def test_published_container_port_is_the_nodes_client_port(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        container_port = int(service["ports"][0].rsplit(":", 1)[1])
        assert load_settings(env(service)).nats_port == container_port, name


# ---- running: restarts, stops, health ----


def test_containers_restart_and_stop_gracefully(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert service["init"] is True, name  # an init reaps orphans and forwards SIGTERM
        grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
        assert grace and int(grace[1]) >= 20, f"{name}: time for the leader to hand over"


def test_health_check_timing(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        check = service["healthcheck"]
        assert check["test"][:3] == ["CMD", "python", "-c"], name
        interval = int(check["interval"].removesuffix("s"))
        assert int(check["timeout"].removesuffix("s")) < interval, name


NOT_READY_PORTS: set[int] = set()
"""The fake processes (by port) whose `/readyz` answers 503."""


class _Readiness(BaseHTTPRequestHandler):
    """`/readyz` of a process: 200, or 503 on a port in `NOT_READY_PORTS`."""

    def do_GET(self) -> None:
        ready = self.path == "/readyz" and self.server.server_address[1] not in NOT_READY_PORTS
        self.send_response(200 if ready else 503)
        self.end_headers()
        self.wfile.write(b"ready\n" if ready else b"not ready: catching up\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def node_run_dir(tmp_path: Path, services: dict[str, dict[str, Any]]) -> Iterator[Path]:
    """A node's data dir whose `run/<name>.http` files are those `esdb up` plans for node 1
    (each pointing at a live local `/readyz`)."""
    variables = env(services[SERVICES[0]])
    stack = Stack(
        StackOptions(
            data_dir=tmp_path,
            node_id=variables["ESDB_NODE_ID"],
            host="127.0.0.1",
            join=("127.0.0.1",),
            replicas=NODES,
        )
    )
    servers = []
    (tmp_path / "run").mkdir(exist_ok=True)
    for url_file in stack.http_url_files:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Readiness)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        url_file.write_text(f"http://127.0.0.1:{server.server_address[1]}\n")
    yield tmp_path
    for server in servers:
        server.shutdown()
        server.server_close()


def run_health_check(service: dict[str, Any], data_dir: Path) -> int:
    command = service["healthcheck"]["test"]
    environ = {**env(service), "ESDB_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, *command[2:]], env=environ, timeout=30).returncode


def test_health_check_passes_when_every_process_of_the_node_is_ready(
    services: dict[str, dict[str, Any]], node_run_dir: Path
) -> None:
    node1 = services[SERVICES[0]]
    assert run_health_check(node1, node_run_dir) == 0
    # It checks this node's own writer: node2's is not among node1's processes.
    assert run_health_check(services[SERVICES[1]], node_run_dir) != 0


def test_health_check_fails_while_a_process_is_not_ready(
    services: dict[str, dict[str, Any]], node_run_dir: Path
) -> None:
    files = sorted((node_run_dir / "run").glob("*.http"))
    assert {f.stem for f in files} >= {"gateway", f"writer-{NODE_IDS[0]}"}
    for url_file in files:
        port = int(url_file.read_text().rsplit(":", 1)[1])
        NOT_READY_PORTS.add(port)
        try:
            assert run_health_check(services[SERVICES[0]], node_run_dir) != 0, url_file.stem
        finally:
            NOT_READY_PORTS.discard(port)
    assert run_health_check(services[SERVICES[0]], node_run_dir) == 0


def test_health_check_fails_before_the_writer_or_gateway_started(
    services: dict[str, dict[str, Any]], node_run_dir: Path
) -> None:
    for name in ("gateway", f"writer-{NODE_IDS[0]}"):
        url_file = node_run_dir / "run" / f"{name}.http"
        url = url_file.read_text()
        url_file.unlink()
        assert run_health_check(services[SERVICES[0]], node_run_dir) != 0, name
        url_file.write_text(url)
    assert run_health_check(services[SERVICES[0]], node_run_dir) == 0


# ---- storage and ports ----


def test_each_node_has_its_own_named_volume_at_the_data_dir(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = []
    for name, service in compose["services"].items():
        volumes = mounts(service)
        assert list(volumes) == [DATA_DIR], name
        assert volumes[DATA_DIR] in declared, f"{name}: {volumes[DATA_DIR]} not declared"
        used.append(volumes[DATA_DIR])
    assert sorted(used) == sorted(declared) and len(set(used)) == NODES


def test_client_ports_are_published_on_distinct_host_ports(
    services: dict[str, dict[str, Any]],
) -> None:
    published = []
    for name, service in services.items():
        (entry,) = service["ports"]
        assert isinstance(entry, str), f'{name}: quote ports as "host:container"'
        host, container = with_defaults(entry).rsplit(":", 1)
        assert int(container) == CLIENT_PORT, name
        published.append(int(host))
    assert published == [4222, 4223, 4224]
    variables = [INTERPOLATION.search(s["ports"][0]) for s in services.values()]
    assert len({match[1] for match in variables if match}) == NODES, "one variable per port"


# ---- the image ----


def test_services_build_the_containerfile_from_this_directory(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        build = service["build"]
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == COMPOSE_DIR, name
        assert (context / build["dockerfile"]).resolve() == CONTAINERFILE, name
        assert with_defaults(service["image"]) == "localhost/esdb:local", name


def test_the_build_script_tags_the_image_compose_runs() -> None:
    script = BUILD_SCRIPT.read_text()
    assert 'IMAGE="${ESDB_IMAGE:-localhost/esdb:local}"' in script
    assert subprocess.run(["bash", "-n", str(BUILD_SCRIPT)]).returncode == 0
    assert BUILD_SCRIPT.stat().st_mode & 0o111, "build-image.sh must be executable"


def test_the_image_builds_on_the_base_the_script_makes() -> None:
    base = re.search(r'^BASE_IMAGE="([^"]+)"', BUILD_SCRIPT.read_text(), re.MULTILINE)
    assert base
    assert [line.split()[0] for line in instructions("FROM")] == [base[1], base[1]]


def test_every_stage_carries_the_label_the_script_prunes_leftovers_by() -> None:
    labels = instructions("LABEL")
    assert len(labels) == len(instructions("FROM")) and len(set(labels)) == 1
    prune = re.search(r"^podman image prune .*--filter label=(\S+)", BUILD_SCRIPT.read_text(), re.M)
    assert prune and prune[1] == labels[0]
    text = CONTAINERFILE.read_text().splitlines()
    froms = [i for i, line in enumerate(text) if line.startswith("FROM ")]
    for start in froms:  # before any layer of the stage is made
        following = [line for line in text[start + 1 :] if line and not line.startswith("#")]
        assert following[0].startswith("LABEL "), text[start]


def test_the_image_installs_only_wheels_from_the_build_context() -> None:
    copied = [line.split()[0] for line in instructions("COPY") if not line.startswith("--from")]
    assert copied == ["wheels/deps", "wheels/esdb"]
    script = BUILD_SCRIPT.read_text()
    assert '"$WHEELS/deps"' in script and '"$WHEELS/esdb/"' in script
    assert 'WHEELS="$COMPOSE_DIR/wheels"' in script
    installs = [line for line in instructions("RUN") if "pip install" in line]
    assert len(installs) == 2
    assert all("--no-index" in line for line in installs), "nothing can be downloaded"


def test_the_image_runs_esdb_up_unprivileged_with_data_at_the_data_dir() -> None:
    (user,) = instructions("USER")
    assert user not in ("root", "0")
    assert instructions("CMD") == ['["esdb", "up"]']
    env_line = " ".join(instructions("ENV"))
    assert f"ESDB_DATA_DIR={DATA_DIR}" in env_line
    assert instructions("VOLUME") == [DATA_DIR]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "esdb" in pyproject["project"]["scripts"]


def test_podman_settings_are_those_these_machines_need() -> None:
    conf = tomllib.loads((COMPOSE_DIR / "containers.conf").read_text())
    assert conf["engine"]["runtime"] == "runc"
    assert conf["engine"]["cgroup_manager"] == "cgroupfs"
    limits = {entry.split("=")[0] for entry in conf["containers"]["default_ulimits"]}
    assert limits == {"nofile", "nproc"}
