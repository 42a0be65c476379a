"""Writes that no leader answered (it died with them, or none led) get `timeout` from the
gateway's orphan watch as soon as a leader announces that it serves; a gateway wired as
`esdb up` wires it, on a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from esdb.contracts.api import MSGPACK_CONTENT_TYPE
from esdb.contracts.subjects import WRITER_SERVING, write_subject
from esdb.services.gateway.__main__ import Gateway, start_gateway
from esdb.services.gateway.orphans import OrphanWatch
from esdb.shared.cluster_view import NatsClusterView
from esdb.shared.settings import Settings
from esdb.shared.telemetry import Telemetry
from tests.stack import wait_until


async def request_heard(
    client: NatsClient,
    subject: str,
    payload: bytes,
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> Msg:
    """A request, sent again while NATS answers that nobody heard it, as esdb's client does.

    A subscription just made (and flushed) on one connection is now and then not yet seen by
    a request from another connection: in 300 tries, 23 got "no responders" (nats-server
    2.15.1); a round trip on the requesting connection first made it 0 in 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply: Msg = await client.request(
                subject, payload, timeout=max(0.01, deadline - time.monotonic()), headers=headers
            )
            return reply
        except nats.errors.NoRespondersError:
            if time.monotonic() > deadline:
                raise
            await client.flush()


@contextlib.asynccontextmanager
async def wired_gateway(url: str) -> AsyncIterator[Gateway]:
    """A gateway wired as `esdb up` wires it; its view only hears announcements (this server
    has no JetStream)."""
    nc = await nats.connect(url)
    view = NatsClusterView(nc, None)
    await view.start()
    gateway = await start_gateway(
        nc, Settings(timeout_ms=5000), Telemetry.create("gateway", "test"), view
    )
    await nc.flush()
    try:
        yield gateway
    finally:
        gateway.following.cancel()
        await view.close()
        await nc.close()


async def test_waiting_writes_get_timeout_when_a_leader_starts_serving(
    plain_nats_url: str,
) -> None:
    async with wired_gateway(plain_nats_url) as gateway:
        client = await nats.connect(plain_nats_url)
        await check_answers(client, gateway.orphans)
        await client.close()


async def check_answers(client: NatsClient, watch: OrphanWatch) -> None:
    subject = write_subject("default", "append")

    lost = asyncio.ensure_future(request_heard(client, subject, b'{"stream": "a-1"}', timeout=10))
    pending: list[asyncio.Future[Msg]] = []

    async def seen(count: int) -> None:
        async def check() -> bool:
            for request in (lost, *pending):
                if request.done():
                    request.result()  # a request that failed says why, not only "timed out"
            return watch.waiting == count

        await wait_until(check, timeout=30, what=f"the watch to hold {count} writes")

    await seen(1)  # in order: a write is forgotten once it is at the head past its deadline
    expired = asyncio.ensure_future(
        request_heard(
            client,
            subject,
            msgspec.msgpack.encode({"stream": "a-2", "timeout_ms": 1}),
            headers={"Content-Type": MSGPACK_CONTENT_TYPE},
            timeout=2,
        )
    )
    pending.append(expired)
    await seen(2)
    pending.clear()  # it is meant to time out
    sent = time.monotonic()

    async def deadline_passed() -> bool:
        return time.monotonic() > sent + 0.01  # the 1 ms write's deadline, not a pause

    await wait_until(deadline_passed, timeout=1, what="the short deadline to pass")
    await client.publish(WRITER_SERVING, b"node9")

    reply = await lost
    error = json.loads(reply.data)["error"]
    assert error["code"] == "timeout"
    assert "retry with the same ids" in error["message"]
    # A write whose own deadline had passed is not answered: its client stopped waiting.
    with pytest.raises(nats.errors.TimeoutError):
        await expired
    assert watch.waiting == 0

    # Writes that arrive after the announcement wait for the next one.
    later = asyncio.ensure_future(request_heard(client, subject, b"{}", timeout=10))
    pending.append(later)
    await seen(1)
    assert not later.done()
    await client.publish(WRITER_SERVING, b"node10")
    assert json.loads((await later).data)["error"]["code"] == "timeout"


async def test_every_gateway_answers_the_writes_it_holds(plain_nats_url: str) -> None:
    """One gateway per host: the write copies spread over the gateways' queue group, and the
    announcement reaches each of them, so none is left to its client's timeout."""
    async with contextlib.AsyncExitStack() as gateways:
        wired = [await gateways.enter_async_context(wired_gateway(plain_nats_url)) for _ in "abc"]
        client = await nats.connect(plain_nats_url)
        await check_spread_answers(client, [gateway.orphans for gateway in wired])
        await client.close()


async def check_spread_answers(client: NatsClient, watches: list[OrphanWatch]) -> None:
    subject = write_subject("default", "append")
    writes = [
        asyncio.ensure_future(request_heard(client, subject, b"{}", timeout=10)) for _ in range(30)
    ]

    async def all_held() -> bool:
        return sum(watch.waiting for watch in watches) == len(writes)

    await wait_until(all_held, timeout=30, what="the gateways to hold every write")
    assert sum(1 for watch in watches if watch.waiting) > 1, "the copies were not spread"
    await client.publish(WRITER_SERVING, b"node2")

    replies = await asyncio.wait_for(asyncio.gather(*writes), timeout=5)
    assert {json.loads(reply.data)["error"]["code"] for reply in replies} == {"timeout"}
