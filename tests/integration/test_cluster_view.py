"""The cluster view against a real nats-server: it follows the lease key through takeovers,
releases, expiry and a server restart, learns that this node's writer serves (announced, or
asked), and hears applied notices only while someone waits for them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgspec
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from esdb.contracts.api import NodeStatus
from esdb.contracts.errors import Timeout, Unavailable
from esdb.contracts.subjects import (
    LOG_STREAM,
    LOG_SUBJECT,
    NODE_STATUS,
    WRITER_SERVING,
    node_applied_subject,
)
from esdb.services.writer.lease import Lease
from esdb.services.writer.notices import AppliedNotices
from esdb.shared.cluster_view import HEARING_TTL_S, NatsClusterView
from esdb.shared.nats_connection import connect
from tests.integration.conftest import NatsServer
from tests.stack import wait_until
from tests.waiting import idle

TTL_S = 1.5


@pytest.fixture
async def nc(jetstream_server: NatsServer) -> AsyncIterator[NatsClient]:
    client = await connect(jetstream_server.url, "cluster-view-test")
    yield client
    await client.close()


async def lease(nc: NatsClient, node: str, ttl: float = TTL_S) -> Lease:
    """A writer's lease, in the bucket the writers use (created by the first)."""
    return await Lease.open(nc.jetstream(), node, ttl=ttl, replicas=1, durability="fsync")


async def holder_is(view: NatsClusterView, node: str | None, timeout: float = 5.0) -> float:
    """Seconds until the view shows `node` holding the lease."""
    started = time.monotonic()

    async def shown() -> bool:
        return view.leadership.holder == node

    await wait_until(shown, timeout=timeout, what=f"the view to show {node} holding the lease")
    return time.monotonic() - started


async def test_the_view_follows_takeover_release_and_announcement(nc: NatsClient) -> None:
    node1, node2 = await lease(nc, "node1"), await lease(nc, "node2")
    async with NatsClusterView(nc, "node1") as view:
        assert await node2.try_acquire()
        await holder_is(view, "node2")
        assert not view.holds_lease and not view.leads

        await node2.release()
        await holder_is(view, None, timeout=TTL_S / 2)  # a delete shows at once, not at expiry

        assert await node1.try_acquire()
        await holder_is(view, "node1")
        assert view.holds_lease and not view.leads, "its writer has not said it serves yet"
        seen = view.leadership
        await nc.publish(WRITER_SERVING, b"node1")
        changed = await view.leadership_change(seen, timeout=5)
        assert view.leads
        assert changed.announcements == seen.announcements + 1

        renewed = view.lease_revision + 1
        assert await node1.renew()

        async def seen_renewal() -> bool:
            return view.lease_revision >= renewed

        await wait_until(seen_renewal, timeout=5, what="the view to see the renewal")
        assert view.leadership == changed, "a renewal is not a change of leadership"


async def test_an_expired_lease_shows_as_free_without_any_update(nc: NatsClient) -> None:
    node2 = await lease(nc, "node2", ttl=1.0)
    async with NatsClusterView(nc, "node1") as view:
        assert await node2.try_acquire()
        await holder_is(view, "node2")
        taken = time.monotonic()
        await holder_is(view, None, timeout=5)  # node2 never renews
        noticed = time.monotonic() - taken
        print(f"expiry of a 1 s lease noticed after {noticed:.2f} s")
        assert noticed < 2.5


async def test_a_writer_already_serving_is_found_by_asking_it(nc: NatsClient) -> None:
    status = NodeStatus(
        node_id="node1", role="leader", applied_sequence=7, log_last_sequence=7, lag=0, stores=[]
    )

    async def answer(msg: Msg) -> None:
        await msg.respond(msgspec.msgpack.encode(status))

    responder = await nc.subscribe(NODE_STATUS, cb=answer)
    node1 = await lease(nc, "node1")
    assert await node1.try_acquire()  # and announced it before the view listened
    async with NatsClusterView(nc, "node1") as view:

        async def leads() -> bool:
            return view.leads

        await wait_until(leads, timeout=5, what="the view to learn that its writer serves")
        assert view.leadership.announcements == 0
    await responder.unsubscribe()


async def test_the_watch_survives_a_server_restart(
    jetstream_server: NatsServer, nc: NatsClient
) -> None:
    node1 = await lease(nc, "node1")
    async with NatsClusterView(nc, "node1") as view:
        assert await node1.try_acquire()
        await holder_is(view, "node1")
        jetstream_server.kill()
        await jetstream_server.start()
        other = await connect(jetstream_server.url, "other writer")
        try:
            node2 = await lease(other, "node2")

            async def taken() -> bool:
                return await node2.try_acquire()  # once node1's lease expired

            await wait_until(taken, timeout=15, what="node2 to take the expired lease")
            await holder_is(view, "node2", timeout=10)
        finally:
            await other.close()


async def test_applied_notices_are_heard_only_while_waiting(nc: NatsClient) -> None:
    subject = node_applied_subject("node1")
    async with NatsClusterView(nc, "node1") as view:
        waiting = asyncio.create_task(view.wait_applied(5, timeout_s=5))

        async def hearing() -> bool:
            return view.hearing == 1

        await wait_until(hearing, timeout=5, what="the wait to listen")
        await nc.flush()
        await nc.publish(subject, b"3")
        await nc.publish(subject, b"5")
        await asyncio.wait_for(waiting, 5)
        assert view.applied == 5
        assert view.hearing == 0

        await nc.publish(subject, b"9")  # nobody listens
        await nc.flush()  # a delivery to this connection would come before the flush's reply
        await idle()
        assert view.applied == 5
        with pytest.raises(Timeout) as behind:
            await view.wait_applied(6, timeout_s=0.2)
        assert behind.value.details == {"sequence": 6, "applied_sequence": 5}


async def test_a_writer_announces_applied_entries_only_while_a_view_hears(
    nc: NatsClient,
) -> None:
    applied = 3
    now = [100.0]
    notices = AppliedNotices(nc, "node1", lambda: applied, clock=lambda: now[0])
    await notices.start()
    sent: list[bytes] = []

    async def record(msg: Msg) -> None:
        sent.append(msg.data)

    await nc.subscribe(node_applied_subject("node1"), cb=record)
    await nc.flush()
    await notices.announce(3)  # nobody hears yet
    await nc.flush()
    await idle()
    assert sent == []

    async with NatsClusterView(nc, "node1") as view:
        waiting = asyncio.create_task(view.wait_applied(5, timeout_s=5))

        async def told() -> bool:
            return notices.heard

        await wait_until(told, timeout=5, what="the view to tell the writer it hears")
        # The writer's answer carried what it had applied before it heard of the view.
        assert view.applied == 3
        applied = 5
        await notices.announce(4)
        await notices.announce(5)
        await asyncio.wait_for(waiting, 5)
        assert view.applied == 5
        assert sent[-2:] == [b"4", b"5"]

    now[0] += HEARING_TTL_S  # nobody said it hears since
    assert not notices.heard
    await notices.announce(6)
    await nc.flush()
    await idle()
    assert sent[-1] == b"5"


async def test_the_log_state_is_none_until_the_log_exists(nc: NatsClient) -> None:
    view = NatsClusterView(nc, None)
    assert await view.log_state(timeout=2) is None
    js = nc.jetstream()
    await js.add_stream(name=LOG_STREAM, subjects=[LOG_SUBJECT])
    for n in range(3):
        await js.publish(LOG_SUBJECT, str(n).encode())
    state = await view.log_state(timeout=2)
    assert state is not None
    assert (state.first_sequence, state.last_sequence) == (1, 3)


async def test_the_log_state_is_unavailable_without_jetstream(plain_nats_url: str) -> None:
    nc = await connect(plain_nats_url, "cluster-view-test")
    try:
        with pytest.raises(Unavailable):
            await NatsClusterView(nc, None).log_state(timeout=0.5)
    finally:
        await nc.close()
