"""compose/docker-compose.yml run for real with podman-compose: three containers, one esdb node
each, take appends under expected-version load; the writer leader's container is killed and
started again, then the next leader's is stopped and started again, while appends go on; every
acknowledged event is stored exactly once, on every node."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from esdb.services.supervisor.nats_server import free_port
from tests.stack import Api, connect_api, wait_until
from tests.system.cluster import (
    cluster_status,
    events_in,
    leader_index,
    verify_replica_events,
    wait_converged,
)
from tests.system.compose_project import ComposeProject, build_image, remove_image, run
from tests.system.history import History, append_until_acked, verify

pytestmark = [
    pytest.mark.skipif(
        shutil.which("podman") is None,
        reason="podman is not installed (apt-get install podman runc mmdebstrap; .ci/run does)",
    ),
    pytest.mark.timeout(1200),
]

NODES = (1, 2, 3)
HEALTHY_TIMEOUT_S = 300.0
FAILOVER_TIMEOUT_S = 60.0
WORKERS = 4
APPENDS_PER_PHASE = 40  # acknowledged appends required before, during and after the outage


def service(node: int) -> str:
    return f"esdb-node{node}"


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The esdb image built from this checkout, under a tag of its own."""
    tag = f"localhost/esdb:test-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    try:
        build_image(tag)
        print(f"image built in {time.monotonic() - started:.1f} s")
        yield tag
    finally:
        remove_image(tag)


@pytest.fixture
def project(image: str) -> Iterator[ComposeProject]:
    """The compose stack on free host ports; removed afterwards, whatever happened."""
    ports = set[int]()
    while len(ports) < len(NODES):
        ports.add(free_port())
    env = {"ESDB_IMAGE": image}
    env |= {
        f"ESDB_NODE{node}_PORT": str(port) for node, port in zip(NODES, sorted(ports), strict=True)
    }
    running = ComposeProject(env)
    try:
        running.up()
        yield running
    finally:
        for node in NODES:
            print(f"---- {service(node)} ----\n{running.logs(service(node))}")
        leftovers = running.down()
        assert not leftovers, f"left behind: {leftovers}"


def url(project: ComposeProject) -> str:
    return ",".join(f"nats://127.0.0.1:{project.env[f'ESDB_NODE{n}_PORT']}" for n in NODES)


async def wait_healthy(project: ComposeProject, nodes: tuple[int, ...]) -> None:
    """Wait until the compose health check passes in each node's container."""
    said: dict[int, str] = {}

    async def healthy() -> bool:
        for node in nodes:
            passed, said[node] = await asyncio.to_thread(project.health, service(node))
            if not passed:
                return False
        return True

    try:
        await wait_until(healthy, timeout=HEALTHY_TIMEOUT_S, what=f"nodes {nodes} to be healthy")
    except AssertionError as e:
        raise AssertionError(f"{e}; last health checks: {said}") from None


def volume_dirs(project: ComposeProject) -> dict[int, Path]:
    """Each node's data directory (`<data dir>/<node id>/`) in its named volume, as the host
    sees it."""
    dirs = {}
    for node in NODES:
        volume = f"{project.name}_{service(node)}"
        mountpoint = run(["podman", "volume", "inspect", "--format", "{{.Mountpoint}}", volume])
        dirs[node] = Path(mountpoint.stdout.strip()) / f"node{node}"
    return dirs


async def append_while(api: Api, history: History, during: Callable[[], Awaitable[None]]) -> None:
    """Appends with exact expected versions from `WORKERS` writers until `during` returns."""
    stop = asyncio.Event()

    async def worker(n: int) -> None:
        stream = f"compose{n}-{uuid.uuid4().hex[:6]}"
        version: int | str = "no_stream"
        while not stop.is_set():
            version = await append_until_acked(api, history, stream, version, 1 + n % 2)

    async def run_then_stop() -> None:
        try:
            await during()
        finally:
            stop.set()

    async with asyncio.TaskGroup() as group:  # a failure anywhere cancels the rest
        group.create_task(run_then_stop())
        for n in range(WORKERS):
            group.create_task(worker(n))


async def acked_more(history: History, count: int, what: str) -> None:
    """Wait until `count` more appends are acknowledged."""
    target = len(history.acked) + count

    async def reached() -> bool:
        return len(history.acked) >= target

    await wait_until(reached, timeout=FAILOVER_TIMEOUT_S * 2, what=f"{count} appends {what}")


async def test_a_killed_node_loses_no_acknowledged_event(project: ComposeProject) -> None:
    started = time.monotonic()
    await wait_healthy(project, NODES)
    print(f"three nodes healthy {time.monotonic() - started:.1f} s after `up`")
    api = await connect_api(url(project))
    history = History()
    timings: dict[str, float] = {}

    async def leader_other_than(node: int) -> None:
        async def elsewhere() -> bool:
            leader = (await cluster_status(api)).get("leader")
            return leader is not None and leader != f"node{node}"

        await wait_until(elsewhere, timeout=FAILOVER_TIMEOUT_S, what=f"a leader other than {node}")

    async def outages() -> None:
        await acked_more(history, APPENDS_PER_PHASE, "before the kill")

        # A crash: SIGKILL to every process of the leader's node, nats-server included.
        victim = await leader_index(api)
        await asyncio.to_thread(project.kill, service(victim))
        timings["killed"] = time.monotonic()
        assert not await asyncio.to_thread(project.running, service(victim))
        await leader_other_than(victim)
        timings["new_leader"] = time.monotonic()
        await acked_more(history, APPENDS_PER_PHASE, f"with node{victim} killed")
        assert not await asyncio.to_thread(project.running, service(victim))
        await asyncio.to_thread(project.start, service(victim))
        timings["started"] = time.monotonic()
        await wait_healthy(project, (victim,))
        timings["healthy"] = time.monotonic()
        await acked_more(history, APPENDS_PER_PHASE, f"after node{victim} came back")

        # A planned stop: SIGTERM through the init; the leader hands over and exits cleanly
        # within the stop grace period.
        leader = await leader_index(api)
        stopping = time.monotonic()
        await asyncio.to_thread(project.stop, service(leader))
        timings["stop"] = time.monotonic() - stopping
        assert await asyncio.to_thread(project.exit_code, service(leader)) == 0
        await leader_other_than(leader)
        await acked_more(history, APPENDS_PER_PHASE, f"with node{leader} stopped")
        await asyncio.to_thread(project.start, service(leader))
        await wait_healthy(project, (leader,))
        await acked_more(history, APPENDS_PER_PHASE, f"after node{leader} came back")

    try:
        await append_while(api, history, outages)
        await wait_converged(api, NODES, timeout=120)
        events = await verify(api, history)
        replicas = {n: events_in(path / "default") for n, path in volume_dirs(project).items()}
        verify_replica_events(replicas, history)
    finally:
        await api.nc.close()
    print(
        f"{len(history.acked)} appends ({len(events)} events, {history.retries} retried); "
        f"new leader {timings['new_leader'] - timings['killed']:.1f} s after the kill; "
        f"the killed node healthy {timings['healthy'] - timings['started']:.1f} s after start; "
        f"the leader's planned stop took {timings['stop']:.1f} s"
    )
