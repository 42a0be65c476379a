"""Connection strings, several servers and retries against a real stack: a gateway killed
while appends are in flight loses none of them and stores none twice."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter

import pytest

from esdb.client import Client, NewEvent, RetryPolicy, UnavailableError
from esdb.services.supervisor.nats_server import free_port
from tests.stack import Stack, wait_until

PATIENT = RetryPolicy(max_retries=100, deadline=60.0, initial_backoff=0.05, max_backoff=0.5)


def _host_port(url: str) -> str:
    return url.split(",")[0].removeprefix("nats://")


async def test_an_esdb_string_names_the_store_and_several_servers(stack: Stack) -> None:
    dead = f"127.0.0.1:{free_port()}"
    url = f"esdb://{dead},{_host_port(stack.url)}?store=default&timeout=3&max_retries=2"
    for _ in range(3):  # the servers are tried in random order: the dead one is passed over
        async with Client.connect(url) as client:
            assert client.store == "default"
            assert client.retry.max_retries == 2
            assert (await client.health()).status == "ok"
            assert client.url == url


async def test_an_unknown_store_in_the_string_is_used(stack: Stack) -> None:
    store = f"nostore{uuid.uuid4().hex[:8]}"
    async with Client.connect(f"esdb://{_host_port(stack.url)}?store={store}") as client:
        assert client.store == store


async def test_no_server_at_all_fails_fast_whatever_the_retries() -> None:
    url = f"esdb://127.0.0.1:{free_port()},127.0.0.1:{free_port()}?timeout=2"
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="cannot connect"):
        await Client.connect(url, retry=PATIENT)
    assert time.monotonic() - started < 4.0


async def test_appends_across_a_gateway_kill_land_exactly_once(stack: Stack) -> None:
    stream = f"retry-{uuid.uuid4().hex[:10]}"
    workers, each = 12, 8
    async with Client.connect(stack.url, timeout=2.0, retry=PATIENT) as client:
        quarter = asyncio.Event()
        landed = 0

        async def worker(w: int) -> None:
            nonlocal landed
            for i in range(each):
                n = w * each + i
                pair = [NewEvent("Counted", {"n": n}), NewEvent("Counted", {"n": n, "again": 1})]
                await client.append(stream, pair)
                landed += 1
                if landed == workers * each // 4:
                    quarter.set()

        async def kill_the_gateway() -> int:
            await quarter.wait()
            pid = stack.pid("gateway")
            os.kill(pid, signal.SIGKILL)
            return pid

        killed, *_ = await asyncio.gather(kill_the_gateway(), *(worker(w) for w in range(workers)))

        async def restarted() -> bool:
            return stack.pid("gateway") != killed

        await wait_until(restarted, timeout=30, what="the gateway to restart")
        events = [event async for event in client.iter_stream(stream, page_size=500)]

    assert max(Counter(event.event_id for event in events).values()) == 1
    assert sorted((e.json()["n"], "again" in e.json()) for e in events) == sorted(
        (n, again) for n in range(workers * each) for again in (False, True)
    ), "an append was lost or stored twice"
    # Each append's two events stay together: atomic, and never half-retried.
    for first, second in zip(events[::2], events[1::2], strict=True):
        assert first.json()["n"] == second.json()["n"]
        assert second.version == first.version + 1
