"""The writer's ports on a three-server JetStream cluster: replicated (R3) log streams and lease
buckets pass the contracts, an R1 stream on the cluster too, and what an R3 stream does with a
wrong `Nats-Expected-Last-Msg-Id` is shown on a throwaway stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats.errors
import pytest
from nats.aio.client import Client as NatsClient

from esdb.services.writer.log import FencedOut
from tests.jetstream import (
    JS_TIMEOUT_S,
    JetStreamLeaseContract,
    JetStreamLogContract,
    connected,
    jetstream_servers,
    log_handles,
)
from tests.stack import wait_until

# What nats-server logs when applying an entry whose Nats-Expected-Last-Msg-Id does not match.
CRITICAL = "critical write error: last msgid mismatch"


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cluster's configs, stores and server logs."""
    return tmp_path_factory.mktemp("jetstream-cluster")


@pytest.fixture(scope="module")
def server_urls(work_dir: Path) -> Iterator[list[str]]:
    """Three routed nats-servers with JetStream for the module's tests."""
    with jetstream_servers(work_dir, 3) as urls:
        yield urls


@pytest.fixture(scope="module")
async def clients(server_urls: list[str]) -> AsyncIterator[list[NatsClient]]:
    """One connection to each server, as three nodes have."""
    async with connected(server_urls) as connections:
        yield connections


class TestReplicatedLog(JetStreamLogContract):
    replicas = 3


class TestOneReplicaLogOnACluster(JetStreamLogContract):
    replicas = 1


class TestReplicatedLease(JetStreamLeaseContract):
    replicas = 3


async def test_a_wrong_predecessor_id_stops_a_replicated_stream(
    clients: list[NatsClient], work_dir: Path
) -> None:
    """What "checks the id only when it applies the entry" means on R3: the entry itself is
    refused (the stream leader answers 10070 once it applies it), but every replica has then
    hit a critical write error, and the stream takes no more writes. Other streams go on."""
    async with log_handles(clients, replicas=3) as (log, other):
        assert not log.checks_id_on_accept
        assert await log.append(b"one", expected_last=0, entry_id="one") == 1

        with pytest.raises(FencedOut):
            await log.append(b"two", expected_last=1, entry_id="two", expected_last_id="nope")

        def logged_it(server_log: Path) -> bool:
            lines = server_log.read_text(errors="replace").splitlines()
            return any(CRITICAL in line and log.stream in line for line in lines)

        async def all_replicas_logged_it() -> bool:
            return sum(logged_it(p) for p in work_dir.glob("*.log")) == 3

        await wait_until(all_replicas_logged_it, timeout=20, what="every replica to log it")
        for handle in (log, other):  # through the stream's leader's server and another
            with pytest.raises(nats.errors.TimeoutError):
                await handle.append(b"two", expected_last=1)
        info = await clients[2].jetstream(timeout=JS_TIMEOUT_S).stream_info(log.stream)
        assert info.state.last_seq == 1

        async with log_handles(clients, replicas=3) as (sibling, _):
            assert await sibling.append(b"one", expected_last=0) == 1
