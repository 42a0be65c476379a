"""Client subscriptions across a leader change on three nodes: the emitter re-publishes around
the failover and readers lag the leader, yet every subscription delivers each event once, in
position order, with no gap."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from esdb.client import Client, RecordedEvent, Subscription
from tests.stack import connect_api, start_stack, wait_until
from tests.system.cluster import leader_index, load_with_fault, replica_events, wait_converged


async def test_subscriptions_deliver_every_event_once_across_a_leader_change(
    tmp_path: Path,
) -> None:
    cluster = start_stack(tmp_path / "cluster", nodes=3)
    try:
        api = await connect_api(cluster.url)
        async with Client.connect(cluster.url) as client:
            subscriptions: dict[str, Subscription] = {
                "all, live": await client.subscribe(all=True),
                "all, catch-up": await client.subscribe(all=True, from_position="start"),
                "type, catch-up": await client.subscribe(
                    event_type="Loaded", from_position="start"
                ),
            }
            delivered: dict[str, list[int]] = {name: [] for name in subscriptions}

            async def collect(name: str) -> None:
                async for item in subscriptions[name]:
                    if isinstance(item, RecordedEvent):
                        delivered[name].append(item.position)

            collecting = [asyncio.create_task(collect(name)) for name in subscriptions]
            old = await leader_index(api)

            async def fault() -> None:
                pid = cluster.pid("writer", old)
                os.kill(pid, signal.SIGSTOP)
                try:

                    async def moved() -> bool:
                        return await leader_index(api) != old

                    await wait_until(moved, timeout=30, what="another node to lead")
                finally:
                    os.kill(pid, signal.SIGCONT)

            await load_with_fault(api, fault, workers=8, appends=40)
            await wait_converged(api)
            stored = len(replica_events(cluster, 1))

            async def all_delivered() -> bool:
                return all(positions[-1:] == [stored] for positions in delivered.values())

            await wait_until(all_delivered, timeout=30, what="every event on every subscription")
            for subscription in subscriptions.values():
                await subscription.close()
            for task in collecting:
                await task
        everything = list(range(1, stored + 1))
        for name, positions in delivered.items():
            assert positions == everything, name  # every event is a `Loaded` one
        await api.nc.close()
    finally:
        cluster.stop()
