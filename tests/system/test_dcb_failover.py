"""DCB decisions on a three-node stack while the leader's writer is killed: every acknowledged
append is in the log exactly once where it was acknowledged (the history checker), decisions
that conflict with nobody are never refused, contested ones land at most once, and every
replica's DCB index answers alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esdb.contracts.commands import DcbItem
from esdb.shared.storage.lmdb_store import LmdbStore
from tests.stack import Api, Stack, connect_api, start_stack
from tests.system.cluster import (
    NODES,
    kill,
    leader_index,
    node_dir,
    verify_replicas,
    wait_converged,
    wait_restarted,
)
from tests.system.history import History, dcb_append_until_acked

WORKERS = 8
DECISIONS = 24
SEATS = 4
READ_DEADLINE_S = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path / "cluster", nodes=3)
    yield running
    running.stop()


async def _read(api: Api, tag: str, min_position: int) -> tuple[list[dict[str, Any]], int]:
    """The DCB events with `tag` and the head, from a reader that applied `min_position`;
    read again through faults, up to a deadline."""
    body: dict[str, Any] = {"query": {"items": [{"tags": [tag]}]}, "limit": 10_000}
    if min_position:
        body["min_position"] = min_position
    loop = asyncio.get_running_loop()
    give_up = loop.time() + READ_DEADLINE_S
    while True:
        try:
            reply = await api.call("dcb_read", body, timeout=5)
        except Exception as e:  # a NATS-level timeout or disconnect: read again
            reply = {"error": {"code": "timeout", "message": repr(e)}}
        if "error" not in reply:
            return reply["events"], reply["head"] or 0
        assert loop.time() < give_up, f"dcb_read kept failing: {reply['error']}"
        await asyncio.sleep(0.05)


async def test_dcb_decisions_across_a_leader_failover(cluster: Stack) -> None:
    api = await connect_api(cluster.url)
    history = History()
    refused: list[tuple[int, str]] = []
    third, over, done = asyncio.Event(), asyncio.Event(), 0

    async def worker(n: int) -> None:
        nonlocal done
        seen = 0  # the last position this worker wrote or read: read-your-writes anywhere
        account = f"acct-{n}-{uuid.uuid4().hex[:6]}"
        i = -1
        while (i := i + 1) < DECISIONS or not over.is_set():  # the load spans the failover
            if i % 3 == 2:
                seat = f"seat-{i % SEATS}"
                claims, head = await _read(api, seat, seen)
                seen = max(seen, head)
                if not claims:
                    landed = await dcb_append_until_acked(
                        api,
                        history,
                        [{"type": "SeatClaimed", "data": {"by": n}, "tags": [seat]}],
                        {"fail_if_events_match": {"items": [{"tags": [seat]}]}, "after": head},
                    )
                    seen = max(seen, landed or 0)
                continue
            entries, head = await _read(api, account, seen)
            landed = await dcb_append_until_acked(
                api,
                history,
                [{"type": "Entered", "data": {"n": len(entries)}, "tags": [account, "ledger"]}],
                {"fail_if_events_match": {"items": [{"tags": [account]}]}, "after": head},
            )
            if landed is None:
                refused.append((n, account))
            seen = max(seen, head, landed or 0)
            done += 1
            if done >= WORKERS * DECISIONS // 3:
                third.set()

    async def fault() -> None:
        await third.wait()
        try:
            old = await leader_index(api)
            pid = kill(cluster, "writer", old)
            await leader_index(api)
            await wait_restarted(cluster, "writer", old, pid)
        finally:
            over.set()

    await asyncio.gather(fault(), *(worker(n) for n in range(WORKERS)))
    await wait_converged(api)
    verify_replicas(cluster, history)
    assert not refused, f"decisions that conflict with nobody were refused: {refused}"

    everything, _ = await _read(api, "ledger", 0)
    accounts: dict[str, list[int]] = {}
    for event in everything:
        account = next(t for t in event["tags"] if t.startswith("acct-"))
        accounts.setdefault(account, []).append(event["data"]["n"])
    assert len(accounts) == WORKERS
    for account, numbers in accounts.items():
        # Each decision counted every earlier entry of its account: none was decided twice
        # or on a stale read.
        assert numbers == list(range(len(numbers))), (account, numbers)
    for seat in range(SEATS):
        claims, _ = await _read(api, f"seat-{seat}", 0)
        assert len(claims) <= 1, f"seat-{seat} was claimed {len(claims)} times"

    answers = []
    for node in NODES:
        replica = LmdbStore(node_dir(cluster, node) / "default", readonly=True)
        try:
            found, head = replica.dcb_read(
                (DcbItem(tags=("ledger",)), DcbItem(("SeatClaimed",))),
                None,
                backward=False,
                limit=100_000,
            )
            answers.append(([r.position for r in found], head))
        finally:
            replica.close()
    assert answers[0] == answers[1] == answers[2]
    print(f"DCB failover: {len(history.dcb_acked)} appends acknowledged, {history.retries} retried")
    await api.nc.close()
