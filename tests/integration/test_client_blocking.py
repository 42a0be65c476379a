"""`SyncClient`'s request-reply calls on blocking sockets in the calling thread, against a real
nats-server with a stand-in service answering on the public subjects."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from esdb.client import StreamNotFoundError, SyncClient, Timeout, TooLarge, Unavailable
from esdb.client.sync import ClientClosed
from esdb.contracts.errors import ErrorBody, ErrorReply
from tests.integration.conftest import NatsServer
from tests.waiting import eventually

READ_STREAM = "esdb.api.default.read_stream"
DEADLINE_S = 10.0


def page(last_version: int, data: bytes = b"{}") -> bytes:
    event = {
        "event_id": "00000000-0000-4000-8000-000000000001",
        "stream_id": "order-1",
        "version": 0,
        "position": 1,
        "event_type": "Placed",
        "data": data,
        "metadata": b"",
        "content_type": "application/json",
        "created": "2024-01-01T00:00:00Z",
    }
    return msgspec.msgpack.encode({"events": [event], "next": None, "last_version": last_version})


NOT_FOUND = msgspec.msgpack.encode(ErrorReply(ErrorBody("stream_not_found", "no such stream")))

Answer = Callable[[Msg], Awaitable[None]]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    running = NatsServer(tmp_path)
    await running.start()
    yield running
    running.kill()


@pytest.fixture
async def service(server: NatsServer) -> AsyncIterator[NatsClient]:
    """A NATS connection for the stand-in service's subscriptions."""
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    yield nc
    await nc.close()


async def answering(nc: NatsClient, subject: str, answer: Answer) -> None:
    await nc.subscribe(subject, cb=answer)
    await nc.flush()


def connect(url: str, **options: str) -> SyncClient:
    query = "&".join(f"{k}={v}" for k, v in {"timeout": "2", **options}.items())
    return SyncClient.connect(f"esdb://{url.removeprefix('nats://')}?{query}")


async def test_a_read_runs_in_the_calling_thread_while_the_loop_is_busy(
    server: NatsServer, service: NatsClient
) -> None:
    async def answer(msg: Msg) -> None:
        await msg.respond(page(7))

    await answering(service, READ_STREAM, answer)
    client = await asyncio.to_thread(connect, server.url)
    try:
        busy, release = threading.Event(), threading.Event()
        # The client's own loop is held until the read is done: a call handed to it would
        # never be answered in time.
        client.loop.call_soon_threadsafe(lambda: (busy.set(), release.wait(DEADLINE_S)))
        assert await asyncio.to_thread(busy.wait, DEADLINE_S)
        try:
            started = time.monotonic()
            read = await asyncio.to_thread(client.read_stream, "order-1")
            assert read.last_version == 7
            assert read.events[0].event_type == "Placed"
            assert time.monotonic() - started < 2
        finally:
            release.set()
    finally:
        await asyncio.to_thread(client.close)


async def test_error_replies_are_raised_typed(server: NatsServer, service: NatsClient) -> None:
    async def answer(msg: Msg) -> None:
        await msg.respond(NOT_FOUND)

    await answering(service, READ_STREAM, answer)
    client = await asyncio.to_thread(connect, server.url)
    try:
        with pytest.raises(StreamNotFoundError):
            await asyncio.to_thread(client.read_stream, "order-1")
        # An error reply leaves the connection usable: the next call on it is answered too.
        with pytest.raises(StreamNotFoundError):
            await asyncio.to_thread(client.read_stream, "order-1")
    finally:
        await asyncio.to_thread(client.close)


async def test_no_responder_is_unavailable_and_known_undelivered(server: NatsServer) -> None:
    client = await asyncio.to_thread(connect, server.url, max_retries="0")
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as failed:
            await asyncio.to_thread(client.read_stream, "order-1")
        assert failed.value.details["delivered"] is False
        assert time.monotonic() - started < 1  # told at once, not timed out
    finally:
        await asyncio.to_thread(client.close)


async def test_a_request_left_unanswered_times_out_and_the_next_one_is_answered(
    server: NatsServer, service: NatsClient
) -> None:
    heard: list[Msg] = []

    async def answer_all_but_the_first(msg: Msg) -> None:
        heard.append(msg)
        if len(heard) > 1:
            await msg.respond(page(len(heard)))

    await answering(service, READ_STREAM, answer_all_but_the_first)
    client = await asyncio.to_thread(connect, server.url, timeout="0.5", max_retries="0")
    try:
        with pytest.raises(Timeout):
            await asyncio.to_thread(client.read_stream, "order-1")
        await heard[0].respond(page(1))  # too late: nobody waits for it any more
        assert (await asyncio.to_thread(client.read_stream, "order-1")).last_version == 2
    finally:
        await asyncio.to_thread(client.close)


async def test_many_threads_at_once_each_get_their_own_reply(
    server: NatsServer, service: NatsClient
) -> None:
    async def echo_version(msg: Msg) -> None:
        await msg.respond(page(msgspec.msgpack.decode(msg.data)["limit"]))

    await answering(service, READ_STREAM, echo_version)
    client = await asyncio.to_thread(connect, server.url)

    def reads(thread: int) -> list[bool]:
        limits = [thread * 1000 + n + 1 for n in range(40)]
        return [client.read_stream("order-1", limit=n).last_version == n for n in limits]

    try:
        with ThreadPoolExecutor(8) as pool:
            done = await asyncio.to_thread(lambda: list(pool.map(reads, range(8))))
        assert all(all(results) for results in done)
    finally:
        await asyncio.to_thread(client.close)


async def test_a_reply_of_many_socket_reads_comes_whole(
    server: NatsServer, service: NatsClient
) -> None:
    data = b'"' + bytes(range(65, 91)) * 30_000 + b'"'  # 780 kB of JSON

    async def answer(msg: Msg) -> None:
        await msg.respond(page(1, data))

    await answering(service, READ_STREAM, answer)
    client = await asyncio.to_thread(connect, server.url)
    try:
        for _ in range(3):
            read = await asyncio.to_thread(client.read_stream, "order-1")
            assert read.events[0].data == data
    finally:
        await asyncio.to_thread(client.close)


async def test_a_request_over_the_servers_payload_limit_is_too_large(server: NatsServer) -> None:
    client = await asyncio.to_thread(connect, server.url)
    try:
        with pytest.raises(TooLarge):  # the servers' default limit is 1 MB
            await asyncio.to_thread(client.read_stream, "x" * 2_000_000)
    finally:
        await asyncio.to_thread(client.close)


async def test_reads_go_on_after_the_server_restarts(
    server: NatsServer, service: NatsClient
) -> None:
    async def answer(msg: Msg) -> None:
        await msg.respond(page(3))

    await answering(service, READ_STREAM, answer)
    client = await asyncio.to_thread(connect, server.url, retry_deadline="20")
    try:
        assert (await asyncio.to_thread(client.read_stream, "order-1")).last_version == 3
        server.kill()  # the pooled connection is now dead
        await server.start()
        # Retried until the service is back on the restarted server; a new connection.
        read = await asyncio.wait_for(asyncio.to_thread(client.read_stream, "order-1"), 20)
        assert read.last_version == 3
    finally:
        await asyncio.to_thread(client.close)


async def test_closing_lets_a_call_in_flight_finish_and_refuses_new_ones(
    server: NatsServer, service: NatsClient
) -> None:
    heard, closing_started = asyncio.Event(), asyncio.Event()

    async def answer_once_closing(msg: Msg) -> None:
        heard.set()
        await asyncio.wait_for(closing_started.wait(), DEADLINE_S)
        await msg.respond(page(5))

    await answering(service, READ_STREAM, answer_once_closing)
    client = await asyncio.to_thread(connect, server.url)
    reading = asyncio.ensure_future(asyncio.to_thread(client.read_stream, "order-1"))
    await asyncio.wait_for(heard.wait(), DEADLINE_S)
    closing = asyncio.ensure_future(asyncio.to_thread(client.close))
    await eventually(lambda: client._sockets.closed, what="the close to begin")
    closing_started.set()
    await asyncio.wait_for(closing, DEADLINE_S)
    assert (await reading).last_version == 5
    with pytest.raises(ClientClosed):
        await asyncio.to_thread(client.read_stream, "order-1")
