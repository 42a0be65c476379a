"""The writer's ports on one real nats-server: its log stream passes the replicated log
contract, and its KV lease key the lease contract."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import pytest
from nats.aio.client import Client as NatsClient

from esdb.services.writer.log import JetStreamLog
from tests.jetstream import connected, jetstream_servers, lease_world, log_handles
from tests.lease_contract import LeaseContract, LeaseWorld
from tests.log_contract import LogContract

LEASE_TTL_S = 2.0


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One nats-server with JetStream for the module's tests."""
    with jetstream_servers(tmp_path_factory.mktemp("jetstream"), 1) as urls:
        yield urls[0]


@pytest.fixture(scope="module")
async def clients(server_url: str) -> AsyncIterator[list[NatsClient]]:
    """Two connections to it, as two nodes have."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(connected(server_url)) for _ in range(2)]


class TestOneServerLog(LogContract):
    @pytest.fixture
    async def logs(
        self, clients: list[NatsClient]
    ) -> AsyncIterator[tuple[JetStreamLog, JetStreamLog]]:
        async with log_handles(clients, replicas=1) as handles:
            yield handles


class TestOneServerLease(LeaseContract):
    @pytest.fixture
    async def world(self, clients: list[NatsClient]) -> AsyncIterator[LeaseWorld]:
        async with lease_world(clients, replicas=1, ttl=LEASE_TTL_S) as world:
            yield world
