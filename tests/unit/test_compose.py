"""compose/: three containers, one esdb node each (`esdb up` for that node, configured by
`ESDB_*` settings), and every name in the files (settings, volumes, hosts, ports, the image and
its base, the podman settings) points at something real. No podman needed: the files are parsed
and checked against the code; tests/system/test_compose_stack.py runs them."""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from esdb.services.supervisor.stack import CLUSTER_SIZES, node_id
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


# ---- running: restarts, stops, health ----


def test_containers_restart_and_stop_gracefully(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert service["init"] is True, name  # an init reaps orphans and forwards SIGTERM
        grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
        assert grace and int(grace[1]) >= 20, f"{name}: time for the leader to hand over"


def test_the_health_check_is_a_valid_python_one_liner(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        check = service["healthcheck"]
        assert check["test"][:3] == ["CMD", "python", "-c"], name
        tree = ast.parse(check["test"][3])
        used = {
            node.slice.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
        }
        # Every variable it reads is set for the container (the image sets ESDB_DATA_DIR too).
        assert {v for v in used if str(v).startswith("ESDB_")} <= set(env(service)), name
        interval = int(check["interval"].removesuffix("s"))
        assert int(check["timeout"].removesuffix("s")) < interval, name


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
