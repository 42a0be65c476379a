"""A cluster across machines, each node started with the per-host command only
(`esdb up --node-id --host --join`) in a network namespace of its own: forming, nodes
joining and being removed under load, a whole host dying and coming back, a rolling restart
and a planned step-down. Each ends with the history checker on every node's LMDB files."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.stack import Api, connect_api, wait_until
from tests.system.cluster import cluster_status, verify_replica_events
from tests.system.history import History, append_until_acked
from tests.system.hosts import HostCluster
from tests.system.netns import PrivateNetwork, private_network

FIRST = (1, 2, 3)
CONVERGE_TIMEOUT_S = 90.0


@pytest.fixture
def network() -> Iterator[PrivateNetwork]:
    """Five hosts on a private bridge; removed afterwards whatever happened."""
    with private_network(nodes=5) as built:
        yield built


@pytest.fixture
def hosts(network: PrivateNetwork, tmp_path: Path) -> Iterator[HostCluster]:
    """Hosts 1-3 running a cluster, each started on its own and naming the others."""
    cluster = HostCluster(network, tmp_path)
    try:
        for index in FIRST:
            cluster.spawn(index, FIRST)
        for index in FIRST:
            line = cluster.running[index].wait_ready(f"node{index}")
            assert f"nats://{cluster.address(index)}:4222" in line
        yield cluster
    finally:
        cluster.stop_all()


@pytest.fixture
async def api(hosts: HostCluster) -> AsyncIterator[Api]:
    """A client of every host (it reconnects to another when one goes)."""
    client = await connect_api(hosts.url(*range(1, 6)))
    try:
        yield client
    finally:
        await client.nc.close()


@dataclass
class Load:
    """Concurrent appends with expected versions until stopped, and when each was acked."""

    history: History = field(default_factory=History)
    acked_at: list[float] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def worker(self, api: Api, n: int) -> None:
        """Append to a stream of its own, one or two events at a time, until stopped."""
        stream = f"load{n}-{uuid.uuid4().hex[:6]}"
        version: int | str = "no_stream"
        i = 0
        while not self.stop.is_set():
            version = await append_until_acked(
                api, self.history, stream, version, 1 + i % 2, deadline_s=90
            )
            self.acked_at.append(time.monotonic())
            i += 1

    def longest_gap(self, since: float) -> float:
        """The longest time between two acknowledgements after `since`, in seconds."""
        times = sorted(t for t in self.acked_at if t >= since)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


async def under_load(api: Api, change: Callable[[], Awaitable[None]], workers: int = 8) -> Load:
    """Run `change` while `workers` append; keep appending a little after it ends."""
    load = Load()
    tasks = [asyncio.create_task(load.worker(api, n)) for n in range(workers)]

    async def acked(count: int) -> bool:
        return len(load.acked_at) >= count

    try:
        await wait_until(lambda: acked(workers * 3), timeout=30, what="the load to start")
        await change()
        after = len(load.acked_at) + workers * 3
        await wait_until(lambda: acked(after), timeout=90, what="appends after the change")
    finally:
        load.stop.set()
        await asyncio.gather(*tasks)
    return load


async def members(api: Api) -> dict[str, dict[str, Any]]:
    """`cluster_status`'s members by node id."""
    return {m["node_id"]: m for m in (await cluster_status(api)).get("members", [])}


async def wait_converged(api: Api, nodes: tuple[int, ...]) -> None:
    """Wait until the given nodes answer, agree on a leader and applied the same sequence."""

    async def converged() -> bool:
        status = await cluster_status(api)
        by_id = {n["node_id"]: n for n in status.get("nodes", [])}
        wanted = [by_id.get(f"node{i}") for i in nodes]
        if not status.get("leader") or any(n is None for n in wanted):
            return False
        applied = {(n["applied_sequence"], n["log_last_sequence"]) for n in wanted if n}
        return len(applied) == 1 and len({a for pair in applied for a in pair}) == 1

    await wait_until(converged, timeout=CONVERGE_TIMEOUT_S, what=f"nodes {nodes} to converge")


async def verify(api: Api, hosts: HostCluster, load: Load, nodes: tuple[int, ...]) -> None:
    """The history checker on every node's LMDB files, once they converged."""
    await wait_converged(api, nodes)
    assert load.history.acked, "the load acknowledged nothing"
    verify_replica_events({i: hosts.replica(i) for i in nodes}, load.history)


async def test_three_hosts_form_a_cluster_and_refuse_a_second_node_of_one_id(
    hosts: HostCluster, api: Api
) -> None:
    status = await cluster_status(api)
    assert sorted(n["node_id"] for n in status["nodes"]) == ["node1", "node2", "node3"]
    assert {n["node_id"]: n["host"] for n in status["nodes"]} == {
        f"node{i}": f"{hosts.address(i)}:4222" for i in FIRST
    }
    log = status["log"]
    servers = [log["leader"], *(r["name"] for r in log["replicas"])]
    assert sorted(servers) == ["esdb-node1", "esdb-node2", "esdb-node3"]

    async def impostor_refused() -> None:
        impostor = hosts.spawn(4, (1,), "--node-id", "node2")
        assert await asyncio.to_thread(impostor.process.wait, 60) == 1
        assert "node id 'node2' is already live" in impostor.log()
        hosts.running.pop(4)

    # Refused while the cluster takes writes, and the writes go on unharmed.
    load = await under_load(api, impostor_refused)
    await verify(api, hosts, load, FIRST)


async def test_nodes_join_and_one_is_removed_under_load(hosts: HostCluster, api: Api) -> None:
    async def grow_then_shrink() -> None:
        hosts.spawn(4, (1,))  # any one member is enough
        hosts.spawn(5, (2,))
        for index in (4, 5):
            await asyncio.to_thread(hosts.running[index].wait_ready, f"node{index}")
        await api.ok("cluster_replicas", {"replicas": 5}, store="_sys")
        assert await asyncio.to_thread(hosts.stop, 5) == 0
        await api.ok("cluster_replicas", {"replicas": 3}, store="_sys")
        removed = await api.ok("cluster_remove", {"node": "node5"}, store="_sys", timeout=30)
        assert removed["node"] == "node5"
        assert removed["server_removed"] is True

    load = await under_load(api, grow_then_shrink)

    known = await members(api)
    assert known["node5"]["state"] == "removed"
    assert known["node4"]["state"] == "member"
    assert known["node4"]["answered"] is True
    await verify(api, hosts, load, (1, 2, 3, 4))

    comeback = hosts.spawn(5, (1,))
    assert await asyncio.to_thread(comeback.process.wait, 90) == 1
    # The whole log: other services' stop lines may follow the refusal.
    assert "was removed from the cluster" in comeback.log()
    hosts.running.pop(5)


@pytest.mark.parametrize("disk_lost", [False, True], ids=["disk-kept", "disk-lost"])
async def test_a_whole_host_dies_and_comes_back(
    hosts: HostCluster, api: Api, disk_lost: bool
) -> None:
    leader = int((await cluster_status(api))["leader"].removeprefix("node"))

    async def power_cut() -> None:
        # esdb up, nats-server, the node's six services and its gateway
        assert await asyncio.to_thread(hosts.kill_host, leader) >= 8

    load = await under_load(api, power_cut)
    assert (await cluster_status(api))["leader"] != f"node{leader}"

    if disk_lost:  # LMDB and JetStream both: it comes back with the same id and nothing else
        shutil.rmtree(hosts.data_dir(leader))
    await asyncio.to_thread(hosts.start, leader, FIRST)
    await verify(api, hosts, load, FIRST)


async def test_a_rolling_restart_loses_nothing(hosts: HostCluster, api: Api) -> None:
    async def roll() -> None:
        for index in FIRST:
            assert await asyncio.to_thread(hosts.stop, index) == 0
            await asyncio.to_thread(hosts.start, index, FIRST)

    started = time.monotonic()
    load = await under_load(api, roll)

    print(f"rolling restart: longest gap between acks {load.longest_gap(started):.3f} s")
    await verify(api, hosts, load, FIRST)


async def test_a_planned_step_down_hands_over_to_a_follower(hosts: HostCluster, api: Api) -> None:
    before = (await cluster_status(api))["leader"]
    answers: list[dict[str, Any]] = []

    async def step_down() -> None:
        answers.append(await api.ok("cluster_step_down", store="_sys"))

    started = time.monotonic()
    load = await under_load(api, step_down)

    assert answers[0]["previous"] == before
    assert answers[0]["leader"] not in (None, before)
    print(f"step-down: longest gap between acks {load.longest_gap(started):.3f} s")
    await verify(api, hosts, load, FIRST)


async def test_one_machine_grows_into_a_three_node_cluster(
    network: PrivateNetwork, tmp_path: Path
) -> None:
    """A cluster started with one replica (its first node waits for a second server: a
    JetStream cluster does not elect a meta leader alone) goes to three replicas while it
    serves: the leader hands over, since whether it pipelines depends on the count."""
    hosts = HostCluster(network, tmp_path)
    try:
        first = hosts.spawn(1, (1,), "--replicas", "1")
        await asyncio.to_thread(hosts.start, 2, (1,), "--replicas", "1")
        await asyncio.to_thread(first.wait_ready, "node1")
        api = await connect_api(hosts.url(1, 2, 3))
        try:

            async def grow() -> None:
                await asyncio.to_thread(hosts.start, 3, (1,))
                answer = await api.ok("cluster_replicas", {"replicas": 3}, store="_sys")
                assert "ESDB_LOG" in answer["streams"]

            load = await under_load(api, grow)

            log = (await cluster_status(api))["log"]
            servers = [log["leader"], *(r["name"] for r in log["replicas"])]
            assert sorted(servers) == ["esdb-node1", "esdb-node2", "esdb-node3"]
            await verify(api, hosts, load, FIRST)
        finally:
            await api.nc.close()
    finally:
        hosts.stop_all()
