"""The writer's ports on one real nats-server: its log stream passes the replicated log
contract, and its KV lease key the lease contract."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from nats.aio.client import Client as NatsClient

from tests.jetstream import (
    JetStreamLeaseContract,
    JetStreamLogContract,
    connected,
    jetstream_servers,
)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One nats-server with JetStream for the module's tests."""
    with jetstream_servers(tmp_path_factory.mktemp("jetstream"), 1) as urls:
        yield urls[0]


@pytest.fixture(scope="module")
async def clients(server_url: str) -> AsyncIterator[list[NatsClient]]:
    """Two connections to it, as two nodes have."""
    async with connected([server_url, server_url]) as connections:
        yield connections


class TestOneServerLog(JetStreamLogContract):
    replicas = 1


class TestOneServerLease(JetStreamLeaseContract):
    replicas = 1
