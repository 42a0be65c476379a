"""A reader waits until its node has applied the log as far as it stood when the reader
started, before it serves reads."""

from __future__ import annotations

import asyncio

from esdb.services.reader.catch_up import wait_caught_up


async def test_a_node_behind_the_log_waits_until_it_has_applied_it() -> None:
    applied = [3]
    checks = 0

    async def log_end() -> int:
        return 10

    def progress() -> int:
        nonlocal checks
        checks += 1
        if checks > 2:
            applied[0] = min(10, applied[0] + 4)  # the writer applying meanwhile
        return applied[0]

    assert await wait_caught_up(log_end, progress, asyncio.Event(), every=0.001)
    assert applied[0] == 10
    assert checks > 3


async def test_a_node_at_the_log_s_end_serves_at_once() -> None:
    async def log_end() -> int:
        return 7

    assert await wait_caught_up(log_end, lambda: 7, asyncio.Event(), every=60)


async def test_a_stop_ends_the_wait() -> None:
    async def log_end() -> int:
        return 10

    stop = asyncio.Event()
    stop.set()
    assert not await wait_caught_up(log_end, lambda: 0, stop, every=0.001)
