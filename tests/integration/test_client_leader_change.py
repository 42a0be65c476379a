"""The Python client sends writes straight to the writer leader (`esdb.leader`, which no
gateway copies) and gives up a write still waiting when a new leader announces that it serves,
retrying it with the same event ids; a leader here is a subscriber on a real nats-server that
keeps what it receives and answers only when the test says so."""

from __future__ import annotations

import asyncio

import msgspec
import nats
import pytest
from nats.aio.msg import Msg

from esdb.client import Client, NewEvent, RetryPolicy, SyncClient
from esdb.client import Timeout as EsdbTimeout
from esdb.contracts.api import AppendResult
from esdb.contracts.subjects import WRITER_SERVING
from tests.stack import wait_until


class SilentLeader:
    """Takes `esdb.leader.default.append` and answers nothing until `answer`."""

    def __init__(self) -> None:
        self.received: list[Msg] = []

    async def on_write(self, msg: Msg) -> None:
        self.received.append(msg)

    async def heard(self, count: int) -> None:
        async def enough() -> bool:
            return len(self.received) >= count

        await wait_until(enough, timeout=10, what=f"{count} writes at the leader")


def event_ids(msg: Msg) -> list[str]:
    return [event["event_id"] for event in msgspec.msgpack.decode(msg.data)["events"]]


async def test_a_new_leader_fails_the_waiting_write_at_once(plain_nats_url: str) -> None:
    leader = SilentLeader()
    nc = await nats.connect(plain_nats_url)
    await nc.subscribe("esdb.leader.default.append", cb=leader.on_write)
    api_copies: list[Msg] = []

    async def copied(msg: Msg) -> None:
        api_copies.append(msg)

    await nc.subscribe("esdb.api.>", cb=copied)
    await nc.flush()
    async with Client.connect(plain_nats_url, timeout=30, retry=RetryPolicy.never()) as client:
        waiting = asyncio.ensure_future(client.append("order-1", [NewEvent("Created", {})]))
        await leader.heard(1)
        assert not waiting.done()
        await nc.publish(WRITER_SERVING, b"node2")
        with pytest.raises(EsdbTimeout, match="the writer leader changed"):
            await waiting  # long before the 30 s request timeout
        # Straight to the leader: nothing went to `esdb.api`, where the gateways copy writes.
        assert api_copies == []
    await nc.close()


async def test_the_given_up_write_is_sent_again_with_the_same_ids(plain_nats_url: str) -> None:
    leader = SilentLeader()
    nc = await nats.connect(plain_nats_url)
    await nc.subscribe("esdb.leader.default.append", cb=leader.on_write)
    await nc.flush()
    async with Client.connect(plain_nats_url, timeout=30) as client:
        waiting = asyncio.ensure_future(client.append("order-1", [NewEvent("Created", {})]))
        await leader.heard(1)
        await nc.publish(WRITER_SERVING, b"node2")
        await leader.heard(2)
        assert event_ids(leader.received[1]) == event_ids(leader.received[0])
        result = AppendResult(first_version=0, last_version=0, first_position=1, last_position=1)
        await nc.publish(leader.received[1].reply, msgspec.msgpack.encode(result))
        assert (await waiting).last_position == 1
        # A write sent after the announcement is not given up by it.
        later = asyncio.ensure_future(client.append("order-2", [NewEvent("Created", {})]))
        await leader.heard(3)
        await nc.publish(leader.received[2].reply, msgspec.msgpack.encode(result))
        assert (await later).last_position == 1
        assert len(leader.received) == 3
    await nc.close()


async def test_blocking_calls_give_up_a_waiting_write_on_a_new_leader_too(
    plain_nats_url: str,
) -> None:
    """`SyncClient` sends its requests over blocking connections of its own, which hear the
    announcement on the socket the write waits on."""
    leader = SilentLeader()
    nc = await nats.connect(plain_nats_url)
    await nc.subscribe("esdb.leader.default.append", cb=leader.on_write)
    await nc.flush()
    client = await asyncio.to_thread(SyncClient.connect, plain_nats_url, timeout=30)
    try:
        waiting = asyncio.ensure_future(
            asyncio.to_thread(client.append, "order-1", [NewEvent("Created", {})])
        )
        await leader.heard(1)
        assert not waiting.done()
        await nc.publish(WRITER_SERVING, b"node2")
        await leader.heard(2)  # given up at once and sent again, with the same ids
        assert event_ids(leader.received[1]) == event_ids(leader.received[0])
        result = AppendResult(first_version=0, last_version=0, first_position=1, last_position=1)
        await nc.publish(leader.received[1].reply, msgspec.msgpack.encode(result))
        assert (await waiting).last_position == 1

        # With retries off the caller sees why.
        strict = await asyncio.to_thread(
            SyncClient.connect, plain_nats_url, timeout=30, retry=RetryPolicy.never()
        )
        try:
            failing = asyncio.ensure_future(
                asyncio.to_thread(strict.append, "order-2", [NewEvent("Created", {})])
            )
            await leader.heard(3)
            await nc.publish(WRITER_SERVING, b"node3")
            with pytest.raises(EsdbTimeout, match="the writer leader changed"):
                await failing
        finally:
            await asyncio.to_thread(strict.close)
    finally:
        await asyncio.to_thread(client.close)
        await nc.close()
