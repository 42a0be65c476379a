"""`esdb up --nats-url URL --node-id NODE --replicas 3`: each node's services on a NATS
cluster the operator runs, one `esdb up` per node, starting no server of its own."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.errors
import pytest

from esdb.services.supervisor.nats_server import (
    ServerSpec,
    free_port_block,
    nats_server_binary,
    wait_for_port,
    write_server_config,
)
from tests.stack import Api, Stack, connect_api, spawn_stack, wait_until
from tests.system.cluster import cluster_status

NODES = (1, 2, 3)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[str]]:
    """Three routed nats-servers with JetStream, as an operator would run them."""
    port, route = free_port_block(3), free_port_block(3)
    routes = tuple(f"127.0.0.1:{route + i}" for i in range(3))
    running = []
    for i in range(3):
        spec = ServerSpec(f"ops-{i}", port + i, route + i, routes=routes)
        config = write_server_config(spec, work_dir=tmp_path / f"nats{i}", durability="fsync")
        running.append(subprocess.Popen([nats_server_binary(), "-c", str(config)]))
    try:
        yield [f"nats://127.0.0.1:{port + i}" for i in range(3)]
    finally:
        for process in running:
            process.kill()
            process.wait()


async def _jetstream_answers(servers: list[str]) -> None:
    """Wait until the operator's cluster has elected its JetStream meta leader: a cluster
    one runs oneself is up before esdb starts on it (slow on a loaded machine)."""
    nc = await nats.connect(servers)

    async def answers() -> bool:
        try:
            await nc.jetstream(timeout=2).account_info()
        except (nats.errors.Error, TimeoutError):
            return False
        return True

    try:
        await wait_until(answers, timeout=120, what="JetStream on the operator's cluster")
    finally:
        await nc.close()


@pytest.fixture
async def nodes(servers: list[str], tmp_path: Path) -> AsyncIterator[dict[int, Stack]]:
    """node1-3, each `esdb up --nats-url` on its own server."""
    for url in servers:
        port = int(url.rsplit(":", 1)[1])
        await wait_for_port(port)
    await _jetstream_answers(servers)
    running: dict[int, Stack] = {}
    try:
        for i in NODES:
            argv = [
                sys.executable, "-m", "esdb.cli.main", "up",
                "--nats-url", servers[i - 1],
                "--node-id", f"node{i}",
                "--replicas", "3",
                "--data-dir", str(tmp_path / f"node{i}"),
            ]  # fmt: skip
            running[i] = spawn_stack(argv, url=servers[i - 1], data_dir=tmp_path / f"node{i}")
        for i, stack in running.items():
            await asyncio.to_thread(stack.wait_ready, f"node{i}")
        yield running
    finally:
        for stack in running.values():
            stack.stop()


async def test_nodes_on_an_operator_s_nats_cluster_serve_and_hand_over(
    servers: list[str], nodes: dict[int, Stack]
) -> None:
    api: Api = await connect_api(",".join(servers))
    try:
        status = await cluster_status(api)
        assert sorted(n["node_id"] for n in status["nodes"]) == ["node1", "node2", "node3"]
        assert not (nodes[1].data_dir / "nats").exists(), "no nats-server of its own"
        appended = await api.ok(
            "append",
            {"stream": "ops-1", "expected_version": "no_stream", "events": [{"type": "E"}]},
        )
        leader = int(status["leader"].removeprefix("node"))

        assert await asyncio.to_thread(nodes.pop(leader).stop) == 0

        after = await cluster_status(api)
        assert after["leader"] not in (None, f"node{leader}")
        again = await api.ok(
            "append", {"stream": "ops-1", "expected_version": 0, "events": [{"type": "E"}]}
        )
        assert again["first_position"] > appended["first_position"]
    finally:
        await api.nc.close()
