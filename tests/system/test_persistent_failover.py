"""A consumer group across a leader change on three nodes: the subscription service moves to the
new leader's node and resumes from the logged checkpoint, so every event is acked at least
once, none is skipped, and the checkpoint reaches the end."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from esdb.client import Client
from tests.stack import connect_api, start_stack, wait_until
from tests.system.cluster import (
    crash,
    leader_index,
    load_with_fault,
    replica_events,
    wait_converged,
)


@pytest.mark.parametrize("how", ["freeze", "kill"])
async def test_a_group_acks_every_event_across_a_leader_change(tmp_path: Path, how: str) -> None:
    cluster = start_stack(tmp_path / "cluster", nodes=3)
    try:
        api = await connect_api(cluster.url)
        async with Client.connect(cluster.url) as client:
            await client.create_subscription("everything", all=True, message_timeout_ms=2_000)
            acked: list[int] = []

            async def consume() -> None:
                while True:  # the consumer stays; deliveries come from whichever node leads
                    async with client.consume("everything") as sub:
                        async for delivered in sub:
                            acked.append(delivered.position)
                            sub.ack(delivered)

            consuming = asyncio.create_task(consume())
            old = await leader_index(api)

            async def fault() -> None:
                if how == "kill":  # kill -9 the leader's writer and subscription service
                    await asyncio.gather(
                        crash(cluster, "writer", old), crash(cluster, "subscription", old)
                    )
                    return
                # The leader node freezes (writer and subscription service) until another
                # node leads; then it thaws and must hand over, not deliver on.
                frozen = [cluster.pid(service, old) for service in ("writer", "subscription")]
                for pid in frozen:
                    os.kill(pid, signal.SIGSTOP)
                try:

                    async def moved() -> bool:
                        return await leader_index(api) != old

                    await wait_until(moved, timeout=30, what="another node to lead")
                finally:
                    for pid in frozen:
                        os.kill(pid, signal.SIGCONT)

            await load_with_fault(api, fault, workers=8, appends=40)
            await wait_converged(api)
            stored = len(replica_events(cluster, 1))

            async def checkpointed() -> bool:
                try:
                    info = await client.subscription_info("everything")
                except Exception:
                    return False
                return info.checkpoint == stored and set(range(1, stored + 1)) <= set(acked)

            await wait_until(checkpointed, timeout=60, what="the group to settle every event")
            consuming.cancel()
        assert stored >= 8 * 40
        assert set(acked) == set(range(1, stored + 1))
        await api.nc.close()
    finally:
        cluster.stop()
