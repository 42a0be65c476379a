"""One real stack (nats-server with JetStream, writer, reader, gateway) per test session."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from esdb.services.supervisor.nats_server import free_port, nats_server_binary, wait_for_port
from tests.stack import Api, Stack, connect_api, start_stack


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
async def plain_nats_url() -> AsyncIterator[str]:
    """A bare nats-server of its own (no JetStream, no esdb, no mappings)."""
    port = free_port()
    server = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_for_port(port)
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()
