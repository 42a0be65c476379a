"""One real stack (nats-server with JetStream, writer, reader, gateway) per test session."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from esdb.services.supervisor.nats_server import nats_server_binary, wait_for_port
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


@pytest.fixture
async def plain_nats_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A bare nats-server of its own (no JetStream, no esdb, no mappings).

    The server picks its own port and reports it in a ports file: a port chosen here and
    bound later could be taken in between, and the test would talk to someone else's server."""
    ports_dir = tmp_path_factory.mktemp("plain-nats")
    server = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", str(ports_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = await _reported_url(server, ports_dir)
        await wait_for_port(int(url.rsplit(":", 1)[1]))
        yield url
    finally:
        server.kill()
        server.wait()


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
