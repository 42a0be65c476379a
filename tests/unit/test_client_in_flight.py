"""Requests waiting on a connection that drops fail at once with `ConnectionLost`."""

from __future__ import annotations

import asyncio

import pytest

from esdb.client.connection import ConnectionLost, InFlight


async def _wait_started(task: asyncio.Task[object]) -> None:
    """Yield to the loop until `task` is suspended inside `run` (it has started)."""
    while not task.get_stack():
        await asyncio.sleep(0)


async def test_a_dropped_connection_fails_every_waiting_request() -> None:
    in_flight = InFlight()
    never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    answered: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(in_flight.run(never))
    done = asyncio.create_task(in_flight.run(answered))
    answered.set_result("reply")
    assert await done == "reply"
    await _wait_started(waiting)

    in_flight.connection_lost()

    with pytest.raises(ConnectionLost):
        await waiting
    assert waiting.cancelling() == 0  # the task goes on as if never cancelled


async def test_cancelling_the_caller_is_not_a_lost_connection() -> None:
    in_flight = InFlight()
    never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(in_flight.run(never))
    await _wait_started(waiting)

    waiting.cancel()

    with pytest.raises(asyncio.CancelledError):
        await waiting
    in_flight.connection_lost()  # nothing left to fail


async def test_a_caller_cancelled_as_the_connection_drops_stays_cancelled() -> None:
    in_flight = InFlight()
    never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(in_flight.run(never))
    await _wait_started(waiting)

    in_flight.connection_lost()
    waiting.cancel()

    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_new_requests_wait_for_the_connection_to_come_back() -> None:
    in_flight = InFlight()
    assert await in_flight.connected(0)
    in_flight.connection_lost()
    assert not await in_flight.connected(0.01)  # still down: the caller gives up

    waiting = asyncio.create_task(in_flight.connected(30))
    await _wait_started(waiting)
    assert not waiting.done()
    in_flight.connection_back()
    assert await asyncio.wait_for(waiting, 5)
