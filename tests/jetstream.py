"""Bare nats-servers with JetStream for the writer's port contracts: one server, or a cluster of
three routed on loopback (no esdb services, no stack)."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient

from esdb.services.supervisor.nats_server import (
    HOST,
    ServerSpec,
    free_port_block,
    nats_server_binary,
    wait_for_port,
    write_server_config,
)
from esdb.services.writer.lease import JetStreamLeaseKey
from esdb.services.writer.log import JetStreamLog
from tests.lease_contract import LeaseContract, LeaseWorld
from tests.log_contract import LogContract
from tests.stack import wait_until

JS_TIMEOUT_S = 5.0


def _server_log(work_dir: Path, name: str) -> Path:
    """Where the server `name` logs."""
    return work_dir / f"{name}.log"


@contextmanager
def jetstream_servers(work_dir: Path, count: int) -> Iterator[list[str]]:
    """Run `count` nats-servers (routed to each other when more than one) with JetStream on
    file storage, fsync before ack as in production, each logging to `<work_dir>/<name>.log`;
    yields their client URLs."""
    port = free_port_block(count)
    route = free_port_block(count) if count > 1 else None
    specs = [
        ServerSpec(
            name=f"contract-{i}",
            port=port + i,
            cluster_port=None if route is None else route + i,
            routes=()
            if route is None
            else tuple(f"{HOST}:{route + j}" for j in range(count) if j != i),
        )
        for i in range(count)
    ]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for spec in specs:
            config = write_server_config(
                spec,
                work_dir=work_dir / spec.name,
                durability="fsync",
            )
            with open(_server_log(work_dir, spec.name), "ab") as log:
                processes.append(
                    subprocess.Popen(
                        [nats_server_binary(), "-c", str(config)],
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                )
        yield [spec.url for spec in specs]
    finally:
        for process in processes:
            process.kill()
            process.wait()


@asynccontextmanager
async def connected(urls: Sequence[str]) -> AsyncIterator[list[NatsClient]]:
    """One NATS connection per URL, once each server listens and JetStream answers there (a
    cluster answers only once it has elected its meta leader)."""
    clients: list[NatsClient] = []
    try:
        for url in urls:
            await wait_for_port(int(url.rsplit(":", 1)[1]))
            clients.append(await nats.connect(url))
            await _wait_for_jetstream(clients[-1], url)
        servers = len(set(urls))  # a test may connect twice to one server
        if servers > 1:
            await _wait_for_placement(clients[0], servers)
        yield clients
    finally:
        for nc in clients:
            await nc.close()


async def _wait_for_jetstream(nc: NatsClient, url: str) -> None:
    js = nc.jetstream(timeout=2)

    async def answers() -> bool:
        try:
            await js.account_info()
        except (nats.errors.Error, TimeoutError):
            return False
        return True

    await wait_until(answers, timeout=30, what=f"JetStream at {url}")


async def _wait_for_placement(nc: NatsClient, replicas: int) -> None:
    """Until the meta leader can place a stream on every server: it answers before it has
    heard from all of them ("no suitable peers for placement", seen once in CI)."""
    js = nc.jetstream(timeout=5)
    probe = f"PLACEMENT_{uuid.uuid4().hex[:12]}"

    async def placed() -> bool:
        try:
            await js.add_stream(name=probe, subjects=[f"placement.{probe}"], num_replicas=replicas)
        except (nats.errors.Error, TimeoutError):
            return False
        await js.delete_stream(probe)
        return True

    await wait_until(placed, timeout=30, what=f"JetStream to place R{replicas} streams")


@asynccontextmanager
async def log_handles(
    clients: Sequence[NatsClient], *, replicas: int
) -> AsyncIterator[tuple[JetStreamLog, JetStreamLog]]:
    """A new log stream of its own with `replicas`, through the first two clients; deleted
    afterwards."""
    name = f"CONTRACT_LOG_{uuid.uuid4().hex[:12]}"
    handles = [
        await JetStreamLog.open(
            nc.jetstream(timeout=JS_TIMEOUT_S),
            replicas=replicas,
            durability="fsync",
            stream=name,
            subject=f"contract.log.{name}",
        )
        for nc in clients[:2]
    ]
    try:
        yield handles[0], handles[1]
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await clients[0].jetstream(timeout=JS_TIMEOUT_S).delete_stream(name)


@asynccontextmanager
async def lease_world(
    clients: Sequence[NatsClient], *, replicas: int, ttl: float
) -> AsyncIterator[LeaseWorld]:
    """A new lease bucket of its own with `replicas` and `ttl`, one handle per client, on the
    wall clock; deleted afterwards."""
    bucket = f"contract_lease_{uuid.uuid4().hex[:12]}"
    keys = [
        await JetStreamLeaseKey.open(
            nc.jetstream(timeout=JS_TIMEOUT_S),
            ttl=ttl,
            replicas=replicas,
            durability="fsync",
            bucket=bucket,
        )
        for nc in clients
    ]
    try:
        yield LeaseWorld.real_time(keys, ttl)
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await clients[0].jetstream(timeout=JS_TIMEOUT_S).delete_key_value(bucket)


class JetStreamLogContract(LogContract):
    """The log contract on log streams of `replicas` on the servers of the module's `clients`
    fixture (a list of connections, the first two used)."""

    replicas = 1

    @pytest.fixture
    async def logs(
        self, clients: list[NatsClient]
    ) -> AsyncIterator[tuple[JetStreamLog, JetStreamLog]]:
        """A new stream, through the first two connections."""
        async with log_handles(clients, replicas=self.replicas) as handles:
            yield handles


class JetStreamLeaseContract(LeaseContract):
    """The lease contract on KV buckets of `replicas` on the servers of the module's `clients`
    fixture, one key handle per connection."""

    replicas = 1
    ttl = 2.0

    @pytest.fixture
    async def world(self, clients: list[NatsClient]) -> AsyncIterator[LeaseWorld]:
        """A new bucket with a TTL of `ttl` seconds."""
        async with lease_world(clients, replicas=self.replicas, ttl=self.ttl) as world:
            yield world
