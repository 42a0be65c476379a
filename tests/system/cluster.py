"""Helpers for fault tests on a three-node stack: who leads, convergence, per-replica state."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats.errors

from esdb.contracts.dcb import DCB_STREAM
from esdb.shared.storage.lmdb_store import LmdbStore
from tests.stack import Api, Stack, wait_until
from tests.system.history import History, append_until_acked

NODES = (1, 2, 3)


async def cluster_status(api: Api) -> dict[str, Any]:
    """`_sys.cluster_status`, or an empty status while the gateway is unreachable."""
    try:
        status: dict[str, Any] = await api.call("cluster_status", store="_sys", timeout=3)
    except nats.errors.Error:
        return {"leader": None, "nodes": []}
    return status


async def leader_index(api: Api, *, timeout: float = 30) -> int:
    """The 1-based index of the node whose writer leads, waiting for one to exist."""
    found: list[int] = []

    async def has_leader() -> bool:
        status = await cluster_status(api)
        if status.get("leader"):
            found.append(int(status["leader"].removeprefix("node")))
            return True
        return False

    await wait_until(has_leader, timeout=timeout, what="a writer leader")
    return found[-1]


async def wait_converged(api: Api, nodes: tuple[int, ...] = NODES, timeout: float = 60) -> int:
    """Wait until every node answers, has no lag, and all applied the same sequence."""
    reached: list[int] = []

    async def converged() -> bool:
        status = await cluster_status(api)
        by_id = {n["node_id"]: n for n in status.get("nodes", [])}
        wanted = [by_id.get(f"node{i}") for i in nodes]
        if any(n is None for n in wanted):
            return False
        applied = {n["applied_sequence"] for n in wanted if n is not None}
        last = {n["log_last_sequence"] for n in wanted if n is not None}
        if len(applied) == 1 and applied == last and status.get("leader"):
            reached.append(applied.pop())
            return True
        return False

    await wait_until(converged, timeout=timeout, what="every node to apply the whole log")

    async def consistent() -> bool:
        status = await cluster_status(api)
        checked = [n for n in status.get("nodes", []) if n["checkpoints"]]
        return bool(status.get("consistent")) and len(checked) == len(nodes)

    await wait_until(consistent, timeout=20, what="the consistency checker to find agreement")
    return reached[-1]


async def freeze_leader_until_another_leads(stack: Stack, api: Api) -> int:
    """SIGSTOP the writer leader until another node leads (a frozen leader cannot renew its
    lease), then resume it, deposed; the new leader's index."""
    old = await leader_index(api)
    pid = stack.pid("writer", old)
    os.kill(pid, signal.SIGSTOP)
    try:
        moved: list[int] = []

        async def new_leader() -> bool:
            moved.append(await leader_index(api))
            return moved[-1] != old

        await wait_until(new_leader, timeout=30, what="another node to lead")
    finally:
        os.kill(pid, signal.SIGCONT)
    return moved[-1]


def replica_events(stack: Stack, node: int, store: str = "default") -> list[tuple[Any, ...]]:
    """Every event in one node's LMDB, read directly from its files."""
    return events_in(stack.data_dir / f"node{node}" / store)


def events_in(store_dir: Path) -> list[tuple[Any, ...]]:
    """Every event in the LMDB store at `store_dir`, read directly from its files."""
    replica = LmdbStore(store_dir, readonly=True)
    try:
        events: list[tuple[Any, ...]] = []
        position: int | None = 1
        while position is not None:
            page, position = replica.read_all(position, backward=False, limit=10_000)
            events.extend(
                (r.position, r.event_id.hex(), r.stream, r.version, r.type, r.data) for r in page
            )
        return events
    finally:
        replica.close()


def replica_digest(events: list[tuple[Any, ...]]) -> str:
    """A hash of a replica's whole `$all`."""
    digest = hashlib.sha256()
    for event in events:
        digest.update(repr(event).encode())
    return digest.hexdigest()


def kill(stack: Stack, service: str, node: int) -> int:
    """kill -9 one process of the stack; returns its pid."""
    pid = stack.pid(service, node)
    os.kill(pid, signal.SIGKILL)
    return pid


async def wait_restarted(stack: Stack, service: str, node: int, old_pid: int) -> None:
    """Wait until the supervisor has started a new process for `service` on `node`."""

    async def restarted() -> bool:
        try:
            return stack.pid(service, node) != old_pid
        except FileNotFoundError:
            return False

    await wait_until(restarted, timeout=30, what=f"{service} on node{node} to restart")


async def crash(stack: Stack, service: str, node: int) -> None:
    """kill -9 one process of the stack and wait until the supervisor has restarted it."""
    await wait_restarted(stack, service, node, kill(stack, service, node))


async def load_with_fault(
    api: Api,
    fault: Callable[[], Awaitable[None]],
    *,
    workers: int = 12,
    appends: int = 30,
    through_fault: bool = False,
) -> History:
    """Concurrent appends with expected versions; `fault` runs once a third have landed. With
    `through_fault`, each worker also goes on appending until the fault is over, however long
    it lasts (a node joining), so the load never ends before the fault does."""
    history = History()
    third = asyncio.Event()
    over = asyncio.Event()
    done = 0

    async def worker(n: int) -> None:
        nonlocal done
        stream = f"fault{n}-{uuid.uuid4().hex[:6]}"
        version: int | str = "no_stream"
        i = 0
        while i < appends or (through_fault and not over.is_set()):
            version = await append_until_acked(api, history, stream, version, 1 + i % 2)
            done += 1
            if done >= workers * appends // 3:
                third.set()
            i += 1

    async def inject() -> None:
        await third.wait()
        try:
            await fault()
        finally:
            over.set()

    await asyncio.gather(inject(), *(worker(n) for n in range(workers)))
    return history


def verify_replicas(stack: Stack, history: History, nodes: tuple[int, ...] = NODES) -> None:
    """Every node holds the same `$all`, with every acknowledged event exactly once in place."""
    verify_replica_events({node: replica_events(stack, node) for node in nodes}, history)


def verify_replica_events(replicas: dict[Any, list[tuple[Any, ...]]], history: History) -> None:
    """Every replica holds the same `$all`, with every acknowledged event exactly once in
    place, versions gapless and nothing of a failed append."""
    digests = {node: replica_digest(events) for node, events in replicas.items()}
    assert len(set(digests.values())) == 1, f"replicas differ: {digests}"
    events = next(iter(replicas.values()))
    assert [e[0] for e in events] == list(range(1, len(events) + 1)), "positions must be dense"
    by_id = {e[1]: e for e in events}
    assert len(by_id) == len(events), "an event is stored twice"
    for acked in history.acked:
        for offset, event_id in enumerate(acked.event_ids):
            event = by_id.get(uuid.UUID(event_id).hex)
            assert event is not None, f"acknowledged event {event_id} is missing"
            assert (event[0], event[2], event[3]) == (
                acked.first_position + offset,
                acked.stream,
                acked.first_version + offset,
            )
    versions: dict[str, list[int]] = {}
    for event in events:
        versions.setdefault(event[2], []).append(event[3])
    for stream, seen in versions.items():
        assert seen == list(range(len(seen))), f"{stream} has version gaps"
    for ids, last_position in history.dcb_acked:
        first_position = last_position - len(ids) + 1
        for offset, event_id in enumerate(ids):
            event = by_id.get(uuid.UUID(event_id).hex)
            assert event is not None, f"acknowledged DCB event {event_id} is missing"
            assert (event[0], event[2]) == (first_position + offset, DCB_STREAM)
    failed = {uuid.UUID(i).hex for i in history.failed_ids}
    assert not failed & by_id.keys(), "a failed append left events behind"


def node_dir(stack: Stack, node: int) -> Path:
    """A node's data directory (its LMDB stores)."""
    return stack.data_dir / f"node{node}"
