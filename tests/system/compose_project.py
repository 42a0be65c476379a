"""compose/docker-compose.yml run with podman-compose under a project name of its own: build its
image, start it, kill and start its containers, ask their health checks, and remove everything
the project made (containers, network, volumes)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
BUILD_SCRIPT = COMPOSE_DIR / "build-image.sh"
CONTAINERS_CONF = COMPOSE_DIR / "containers.conf"
PROJECT_LABEL = "io.podman.compose.project"
SERVICE_LABEL = "io.podman.compose.service"
BUILD_TIMEOUT_S = 600.0
COMMAND_TIMEOUT_S = 120.0
# How to remove each kind of thing a project makes, containers first: they hold the rest.
REMOVE = {
    "ps": ["podman", "rm", "--force", "--time", "0"],
    "volume": ["podman", "volume", "rm", "--force"],
    "network": ["podman", "network", "rm", "--force"],
}


class PodmanError(RuntimeError):
    """A podman or podman-compose command failed; carries its output."""


def podman_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with the podman settings these machines need (compose/containers.conf,
    unless CONTAINERS_CONF names another file)."""
    env = {**os.environ, **(extra or {})}
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def run(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = COMMAND_TIMEOUT_S,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end; with `check`, a non-zero exit raises `PodmanError`."""
    result = subprocess.run(
        args,
        env=env or podman_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise PodmanError(
            f"{' '.join(args)} exited with {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


def build_image(tag: str) -> None:
    """Build the esdb image as `tag` with compose/build-image.sh, from this checkout and with
    this Python's pip."""
    run(
        [str(BUILD_SCRIPT)],
        env=podman_env({"ESDB_IMAGE": tag, "PYTHON": sys.executable}),
        timeout=BUILD_TIMEOUT_S,
    )


def remove_image(tag: str) -> None:
    """Remove the tag (the layers stay as the next build's cache)."""
    run(["podman", "rmi", "--ignore", tag], check=False)


@dataclass
class ComposeProject:
    """One run of compose/docker-compose.yml; `env` sets its `${...}` variables (the image,
    the published ports)."""

    env: dict[str, str]
    name: str = field(default_factory=lambda: f"esdb-test-{uuid.uuid4().hex[:8]}")

    def compose(self, *args: str, timeout: float = COMMAND_TIMEOUT_S) -> str:
        """Run a podman-compose command on this project; its output."""
        command = [sys.executable, "-m", "podman_compose", "--project-name", self.name]
        result = run(
            [*command, "--file", str(COMPOSE_FILE), *args],
            env=podman_env(self.env),
            timeout=timeout,
        )
        return result.stdout

    def up(self) -> None:
        """Create the network, the volumes and the containers, and start them."""
        self.compose("up", "--detach", timeout=300.0)

    def container(self, service: str) -> str:
        """The name of the service's container."""
        project = f"label={PROJECT_LABEL}={self.name}"
        of_service = f"label={SERVICE_LABEL}={service}"
        listing = ["podman", "ps", "--all", "--filter", project, "--filter", of_service]
        names = run([*listing, "--format", "{{.Names}}"]).stdout.split()
        if len(names) != 1:
            raise PodmanError(f"{self.name}: service {service} has containers {names}")
        return names[0]

    def kill(self, service: str) -> None:
        """SIGKILL the service's container (every process in it), as a host crash would."""
        run(["podman", "kill", self.container(service)])

    def stop(self, service: str) -> None:
        """Stop the service as compose does: SIGTERM, then SIGKILL after its
        `stop_grace_period`."""
        self.compose("stop", service)

    def start(self, service: str) -> None:
        """Start the service's stopped container again, with its volume as it was."""
        run(["podman", "start", self.container(service)])

    def running(self, service: str) -> bool:
        """Whether the service's container is running."""
        return bool(self._state(service)["Running"])

    def exit_code(self, service: str) -> int:
        """How the service's container last exited (137: SIGKILL)."""
        return int(self._state(service)["ExitCode"])

    def _state(self, service: str) -> dict[str, Any]:
        result = run(["podman", "inspect", "--format", "{{json .State}}", self.container(service)])
        state: dict[str, Any] = json.loads(result.stdout)
        return state

    def health(self, service: str) -> tuple[bool, str]:
        """Run the service's compose health check now: whether it passed, and what podman said.
        (Nothing runs health checks on a timer here: podman schedules them with systemd,
        which this machine lacks.) A stopped container fails it."""
        result = run(["podman", "healthcheck", "run", self.container(service)], check=False)
        return result.returncode == 0, (result.stdout + result.stderr).strip()

    def logs(self, service: str, lines: int = 80) -> str:
        """The last lines the service's container wrote (stdout and stderr)."""
        try:
            name = self.container(service)
        except PodmanError as e:
            return str(e)
        result = run(["podman", "logs", "--tail", str(lines), name], check=False)
        return result.stdout + result.stderr

    def down(self) -> list[str]:
        """Remove the project's containers, network and volumes, whatever state they are in;
        returns what is still there afterwards (nothing, normally)."""
        with contextlib.suppress(PodmanError, subprocess.TimeoutExpired):  # swept below
            self.compose("down", "--volumes", "--timeout", "10", timeout=180.0)
        for kind, remove in REMOVE.items():
            leftover = self._labelled(kind)
            if leftover:
                run([*remove, *leftover], check=False)
        return [name for kind in REMOVE for name in self._labelled(kind)]

    def _labelled(self, kind: str) -> list[str]:
        """Names of the project's containers, volumes or networks (`kind`: ps, volume, network)."""
        command = ["podman", kind, "ls"] if kind != "ps" else ["podman", "ps", "--all"]
        name = "{{.Names}}" if kind == "ps" else "{{.Name}}"
        filter_ = f"label={PROJECT_LABEL}={self.name}"
        return run([*command, "--filter", filter_, "--format", name]).stdout.split()
