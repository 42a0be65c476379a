"""Live fan-out across a leader change: every committed event is published at least once,
with no gap in positions (subscribers deduplicate by position)."""

from __future__ import annotations

from pathlib import Path

from nats.aio.msg import Msg

from esdb.contracts.topics import POSITION_HEADER, all_events_subject
from tests.stack import connect_api, start_stack, wait_until
from tests.system.cluster import (
    freeze_leader_until_another_leads,
    leader_index,
    load_with_fault,
    replica_events,
    verify_replicas,
    wait_converged,
)


async def test_fanout_has_no_gap_when_leadership_moves(tmp_path: Path) -> None:
    cluster = start_stack(tmp_path / "cluster", nodes=3)
    try:
        api = await connect_api(cluster.url)
        listener = await connect_api(cluster.url)
        positions: list[int] = []

        async def collect(msg: Msg) -> None:
            positions.append(int((msg.headers or {})[POSITION_HEADER]))

        await listener.nc.subscribe(all_events_subject("default"), cb=collect)
        await listener.nc.flush()
        old = await leader_index(api)

        moved: list[int] = []

        async def fault() -> None:
            # Leadership (and with it the fan-out) moves to another node; resumed, the old
            # leader finds itself deposed.
            moved.append(await freeze_leader_until_another_leads(cluster, api))

        history = await load_with_fault(api, fault, workers=8, appends=40)
        await wait_converged(api)
        verify_replicas(cluster, history)  # a paused, deposed leader wrote nothing stale
        stored = len(replica_events(cluster, 1))
        assert stored == sum(len(a.event_ids) for a in history.acked)

        async def all_published() -> bool:
            return set(range(1, stored + 1)) <= set(positions)

        await wait_until(all_published, timeout=30, what="every position on the fan-out")
        assert max(positions) == stored, "nothing beyond what was committed"
        assert moved[-1] != old
        duplicates = len(positions) - len(set(positions))
        print(f"fan-out: {stored} events, {duplicates} published twice around the failover")
        await listener.nc.close()
        await api.nc.close()
    finally:
        cluster.stop()
