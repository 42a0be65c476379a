"""A real esdb stack (`esdb up` as a child process) for integration and system tests."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NatsClient

from esdb.services.supervisor.nats_server import free_port_block

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 90.0


class StackFailed(RuntimeError):
    """The stack did not start; carries the tail of its log."""


@dataclass
class Stack:
    """A running `esdb up`: its NATS URL, data directory and process."""

    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)
    _printed: bytes = b""

    def pid(self, service: str, node: int = 1) -> int:
        """The pid of a supervised process: `writer`, `reader`, `nats-server` of a node, or
        the `gateway`."""
        name = service if service == "gateway" else f"{service}-node{node}"
        return int((self.data_dir / "run" / f"{name}.pid").read_text())

    def ui_url(self) -> str:
        """Where the stack's web UI serves (it writes the address once it listens)."""
        return (self.data_dir / "run" / "ui.url").read_text().strip()

    def http_url(self, service: str, node: int = 1) -> str:
        """Where a supervised process serves `/metrics`, `/healthz` and `/readyz`."""
        name = service if service == "gateway" else f"{service}-node{node}"
        return (self.data_dir / "run" / f"{name}.http").read_text().strip()

    def wait_ready(self, what: str, timeout: float = READY_TIMEOUT_S) -> str:
        """Wait for the `ready` line the stack prints, and return it."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._printed += self.process.stdout.read() or b""
            for line in self._printed.decode(errors="replace").splitlines():
                if "ready" in line:
                    return line
            if self.process.poll() is not None:
                raise StackFailed(
                    f"{what} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            time.sleep(0.05)  # polling a pipe, not waiting on state
        self.stop()
        raise StackFailed(f"{what} was not ready in {timeout} s:\n{self.log_tail()}")

    def log(self) -> str:
        """The stack's whole stderr so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the stack's stderr."""
        return "\n".join(self.log().splitlines()[-lines:])

    def interrupt(self) -> None:
        """Ctrl-C in a terminal: SIGINT to every process in the job's process group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT, as Ctrl-C would, and wait for a clean exit; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_stack(
    data_dir: Path,
    *,
    durability: str = "fsync",
    port: int | None = None,
    nodes: int = 1,
    env: dict[str, str] | None = None,
) -> Stack:
    """Run `esdb up` (with extra `ESDB_*` settings in `env`) and wait for its `ready` line."""
    port = port or free_port_block(nodes)
    args = [
        sys.executable,
        "-m",
        "esdb.cli.main",
        "up",
        "--data-dir",
        str(data_dir),
        "--nats-port",
        str(port),
        "--durability",
        durability,
        "--nodes",
        str(nodes),
    ]
    urls = ",".join(f"nats://127.0.0.1:{port + i}" for i in range(nodes))
    return launch_stack(args, url=urls, data_dir=data_dir, what="esdb up", env=env)


def launch_stack(
    args: list[str], *, url: str, data_dir: Path, what: str, env: dict[str, str] | None = None
) -> Stack:
    """Run a command that starts a stack (logging to `<data_dir>/stack.log`) and wait for the
    `ready` line it prints."""
    stack = spawn_stack(args, url=url, data_dir=data_dir, env=env)
    stack.wait_ready(what)
    return stack


def spawn_stack(
    args: list[str], *, url: str, data_dir: Path, env: dict[str, str] | None = None
) -> Stack:
    """Start a command that starts a stack, logging to `<data_dir>/stack.log`; not waiting."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "stack.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=log,
            # The web UI on any free port: tests run stacks side by side (xdist).
            env={"ESDB_UI_PORT": "0", **os.environ, **(env or {})},
            process_group=0,  # its own, as a shell gives a foreground job: see `interrupt`
        )
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    return Stack(url, data_dir, process, log_path, args)


class Api:
    """JSON request-reply on the public subjects, as any NATS client would do it."""

    def __init__(self, nc: NatsClient, store: str = "default") -> None:
        self.nc = nc
        self.store = store

    async def raw(
        self,
        subject: str,
        body: bytes,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> bytes:
        """Send raw bytes and return the raw reply."""
        reply = await self.nc.request(subject, body, timeout=timeout, headers=headers)
        return bytes(reply.data)

    async def call(
        self, operation: str, body: Any = None, *, store: str | None = None, timeout: float = 10.0
    ) -> Any:
        """Send `body` as JSON to `esdb.api.<store>.<operation>` and decode the JSON reply."""
        subject = f"esdb.api.{store or self.store}.{operation}"
        data = await self.raw(subject, json.dumps(body or {}).encode(), timeout=timeout)
        return json.loads(data)

    async def ok(self, operation: str, body: Any = None, **kwargs: Any) -> Any:
        """Like `call`, failing the test on an error reply."""
        reply = await self.call(operation, body, **kwargs)
        assert "error" not in reply, reply
        return reply

    async def error(self, operation: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
        """Like `call`, expecting an error reply; returns its `error` object."""
        reply = await self.call(operation, body, **kwargs)
        assert "error" in reply, reply
        error: dict[str, Any] = reply["error"]
        return error


async def connect_api(url: str) -> Api:
    """An `Api` on a fresh NATS connection. Its connection errors are expected in fault tests
    (it reconnects), so they go to the debug log rather than as tracebacks to stderr."""

    async def on_error(error: Exception) -> None:
        log.debug("test client connection error: %r", error)

    return Api(
        await nats.connect(
            url.split(","), max_reconnect_attempts=-1, reconnect_time_wait=0.2, error_cb=on_error
        )
    )


async def http_get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    """GET `url` (plain HTTP): the status code and the body as text."""
    parts = urlsplit(url)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname, parts.port), timeout
    )
    try:
        writer.write(f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def wait_until(check: Callable[[], Awaitable[bool]], *, timeout: float, what: str) -> None:
    """Poll an async condition until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def read_all_events(api: Api, *, page: int = 1000) -> list[dict[str, Any]]:
    """Every event of the store's `$all`, paged forward."""
    events: list[dict[str, Any]] = []
    position: int | None = 1
    while position is not None:
        reply = await api.ok("read_all", {"from_position": position, "limit": page})
        events.extend(reply["events"])
        position = reply["next_position"]
    return events
