"""One real stack (nats-server with JetStream, writer, reader, gateway) per test session."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from esdb.services.supervisor.nats_server import nats_server_binary, wait_for_port
from tests.browser import browser, context, page  # noqa: F401 - the UI tests' fixtures
from tests.stack import Api, Stack, connect_api, start_stack, wait_until


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`esdb up` in fsync mode on a free port with its data in a temp dir."""
    running = start_stack(Path(tmp_path_factory.mktemp("stack")), durability="fsync")
    yield running
    code = running.stop()
    assert code == 0, f"esdb up exited with {code}:\n{running.log_tail()}"


@pytest.fixture(scope="session")
async def api(stack: Stack) -> AsyncIterator[Api]:
    """JSON request-reply against the session's stack."""
    client = await connect_api(stack.url)
    yield client
    await client.nc.close()


class NatsServer:
    """A nats-server of a test's own, on a port it picks and reports itself (a port chosen
    here and bound later could be taken in between, and the test would talk to someone else's
    server); `jetstream` keeps its store in `work`, so a restart finds its streams again."""

    def __init__(self, work: Path, *, jetstream: bool = False) -> None:
        self._work = work
        self._jetstream = jetstream
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""

    async def start(self) -> str:
        """Start (again, on the port it had, if it ran before); its URL."""
        port = self.url.rsplit(":", 1)[1] if self.url else "-1"
        args = [nats_server_binary(), "-a", "127.0.0.1", "-p", port]
        args += ["--ports_file_dir", str(self._work)]
        if self._jetstream:
            args += ["-js", "-sd", str(self._work / "jetstream")]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = await _reported_url(self._process, self._work)
        await wait_for_port(int(self.url.rsplit(":", 1)[1]))
        return self.url

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


@pytest.fixture
async def plain_nats_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A bare nats-server of its own (no JetStream, no esdb, no mappings)."""
    server = NatsServer(tmp_path_factory.mktemp("plain-nats"))
    try:
        yield await server.start()
    finally:
        server.kill()


@pytest.fixture
async def jetstream_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsServer]:
    """A nats-server of its own with JetStream (and no esdb), which a test may restart."""
    server = NatsServer(tmp_path_factory.mktemp("jetstream-nats"), jetstream=True)
    try:
        await server.start()
        yield server
    finally:
        server.kill()


async def _reported_url(server: subprocess.Popen[bytes], ports_dir: Path) -> str:
    ports_file = ports_dir / f"nats-server_{server.pid}.ports"
    urls: list[str] = []

    async def reported() -> bool:
        assert server.poll() is None, f"nats-server exited with {server.returncode}"
        try:
            urls.extend(json.loads(ports_file.read_text())["nats"])
        except (OSError, ValueError):  # not written yet, or half written
            return False
        return True

    await wait_until(reported, timeout=15, what="nats-server to report its port")
    return urls[0]
