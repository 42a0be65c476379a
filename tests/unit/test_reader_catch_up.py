"""A reader waits until its node has applied the log as far as it stood when the reader
started, before it serves reads."""

from __future__ import annotations

import asyncio

from esdb.services.reader.catch_up import log_end, wait_caught_up
from esdb.shared.cluster_view import MemoryClusterView
from tests.waiting import idle


async def test_a_node_behind_the_log_waits_until_it_has_applied_it() -> None:
    view = MemoryClusterView(log_end=10)
    view.applied_to(3)
    target = await log_end(view)
    waiting = asyncio.create_task(wait_caught_up(view, target, asyncio.Event()))
    await idle()
    view.applied_to(7)  # the writer applying meanwhile
    await idle()
    assert not waiting.done()
    view.applied_to(10)
    assert await asyncio.wait_for(waiting, 1)


async def test_a_node_at_the_log_s_end_serves_at_once() -> None:
    view = MemoryClusterView(log_end=7)
    view.applied_to(7)
    assert await asyncio.wait_for(wait_caught_up(view, await log_end(view), asyncio.Event()), 1)


async def test_a_cluster_without_a_log_yet_has_nothing_to_catch_up_with() -> None:
    view = MemoryClusterView(log_end=None)
    assert await log_end(view) == 0
    assert await asyncio.wait_for(wait_caught_up(view, 0, asyncio.Event()), 1)


async def test_a_stop_ends_the_wait() -> None:
    view = MemoryClusterView(log_end=10)
    stop = asyncio.Event()
    waiting = asyncio.create_task(wait_caught_up(view, 10, stop))
    await idle()
    stop.set()
    assert not await asyncio.wait_for(waiting, 1)
    assert view.hearing == 0, "the abandoned wait stopped listening"
