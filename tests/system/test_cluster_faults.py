"""Faults on a three-node stack under concurrent load: nothing acknowledged is lost,
duplicated or reordered, and every replica converges to the same log."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import Stack, connect_api, start_stack, wait_until
from tests.system.cluster import (
    NODES,
    cluster_status,
    crash,
    kill,
    leader_index,
    load_with_fault,
    node_dir,
    verify_replicas,
    wait_converged,
    wait_restarted,
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Stack]:
    """A fresh three-node stack for one fault scenario."""
    running = start_stack(tmp_path / "cluster", nodes=3)
    yield running
    running.stop()


async def test_kill_leader_writer(cluster: Stack) -> None:
    api = await connect_api(cluster.url)
    old = await leader_index(api)
    timings: dict[str, float] = {}

    async def fault() -> None:
        pid = kill(cluster, "writer", old)
        timings["killed"] = time.monotonic()
        new = await leader_index(api)
        timings["new_leader"] = time.monotonic()
        assert new != old or cluster.pid("writer", old) != pid
        await wait_restarted(cluster, "writer", old, pid)

    history = await load_with_fault(api, fault)
    await wait_converged(api)
    verify_replicas(cluster, history)
    print(
        f"leader failover: {timings['new_leader'] - timings['killed']:.2f} s; "
        f"{history.retries} retried requests"
    )
    await api.nc.close()


async def test_kill_follower_writer(cluster: Stack) -> None:
    api = await connect_api(cluster.url)
    leader = await leader_index(api)
    follower = next(n for n in NODES if n != leader)

    async def fault() -> None:
        await crash(cluster, "writer", follower)

    history = await load_with_fault(api, fault)
    await wait_converged(api)
    verify_replicas(cluster, history)
    await api.nc.close()


async def test_kill_one_nats_server(cluster: Stack) -> None:
    api = await connect_api(cluster.url)
    leader = await leader_index(api)

    async def fault() -> None:
        await crash(cluster, "nats-server", leader)

    history = await load_with_fault(api, fault)
    await wait_converged(api)
    verify_replicas(cluster, history)
    await api.nc.close()


async def test_wipe_one_node(cluster: Stack) -> None:
    api = await connect_api(cluster.url)
    leader = await leader_index(api)
    victim = next(n for n in NODES if n != leader)

    async def fault() -> None:
        shutil.rmtree(node_dir(cluster, victim))
        pids = [kill(cluster, service, victim) for service in ("writer", "reader")]
        for service, pid in zip(("writer", "reader"), pids, strict=True):
            await wait_restarted(cluster, service, victim, pid)

    history = await load_with_fault(api, fault)
    await wait_converged(api)
    verify_replicas(cluster, history)
    await api.nc.close()


async def test_wiped_node_restores_an_image_when_the_log_was_purged(tmp_path: Path) -> None:
    compacting = {"ESDB_IMAGE_EVERY_ENTRIES": "15", "ESDB_LOG_RETAIN_ENTRIES": "3"}
    cluster = start_stack(tmp_path / "cluster", nodes=3, env=compacting)
    try:
        api = await connect_api(cluster.url)
        leader = await leader_index(api)
        victim = next(n for n in NODES if n != leader)

        async def log_was_purged() -> bool:
            status = await cluster_status(api)
            return bool(status.get("log") and status["log"]["first_sequence"] > 1)

        async def fault() -> None:
            await wait_until(log_was_purged, timeout=30, what="an image and a log purge")
            shutil.rmtree(node_dir(cluster, victim))
            pids = [kill(cluster, service, victim) for service in ("writer", "reader")]
            for service, pid in zip(("writer", "reader"), pids, strict=True):
                await wait_restarted(cluster, service, victim, pid)

        history = await load_with_fault(api, fault, workers=8, appends=60)
        await wait_converged(api)
        verify_replicas(cluster, history)
        assert "restored image of log sequence" in cluster.log_tail(2000)
        await api.nc.close()
    finally:
        cluster.stop()


async def test_restart_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "cluster"
    stack = start_stack(data_dir, nodes=3)
    first_port = int(stack.url.split(",")[0].rsplit(":", 1)[1])
    try:
        api = await connect_api(stack.url)

        async def fault() -> None:
            return None

        history = await load_with_fault(api, fault, workers=6, appends=10)
        await wait_converged(api)
        await api.nc.close()
    finally:
        assert stack.stop() == 0
    stack = start_stack(data_dir, nodes=3, port=first_port)
    try:
        api = await connect_api(stack.url)
        more = await load_with_fault(api, fault, workers=6, appends=10)
        history.acked.extend(more.acked)
        await wait_converged(api)
        verify_replicas(stack, history)
        await api.nc.close()
    finally:
        assert stack.stop() == 0
