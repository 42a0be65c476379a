"""Read-your-writes for snapshots: a request waits until its node applied the log as it stood
when the request came, woken by the writer's notices, and gives up with `timeout`."""

from __future__ import annotations

import asyncio

import pytest

from esdb.contracts.errors import Timeout
from esdb.services.snapshot.freshness import CatchUp, wait_applied
from esdb.shared.wakeup import Wakeup


class Progress:
    def __init__(self, applied: int = 0) -> None:
        self.value = applied
        self.wakeup = Wakeup()
        self.looks = 0

    def applied(self) -> int:
        self.looks += 1
        return self.value

    def advance(self, to: int) -> None:
        self.value = to
        self.wakeup.notify()

    async def wait(self, sequence: int, timeout_s: float) -> None:
        await wait_applied(self.applied, self.wakeup, sequence, timeout_s)


async def test_a_node_that_applied_enough_answers_at_once() -> None:
    progress = Progress(applied=7)
    await asyncio.wait_for(progress.wait(7, 5.0), 0.5)
    assert progress.looks == 1


async def test_a_notice_wakes_the_wait() -> None:
    progress = Progress(applied=3)
    waiting = asyncio.create_task(progress.wait(5, 5.0))
    await asyncio.sleep(0)
    progress.advance(4)
    await asyncio.sleep(0)
    assert not waiting.done()
    progress.advance(5)
    await asyncio.wait_for(waiting, 0.04)  # well below the poll interval


async def test_without_notices_polling_still_finds_progress() -> None:
    progress = Progress(applied=1)
    waiting = asyncio.create_task(progress.wait(2, 5.0))
    await asyncio.sleep(0)
    progress.value = 2  # applied, but the notice was lost
    await asyncio.wait_for(waiting, 1.0)


async def test_a_node_that_stays_behind_times_out_with_both_sequences() -> None:
    progress = Progress(applied=1)
    with pytest.raises(Timeout) as caught:
        await progress.wait(9, 0.05)
    assert caught.value.details == {"sequence": 9, "applied_sequence": 1}


async def test_catch_up_waits_for_the_log_end_it_read() -> None:
    progress = Progress(applied=4)
    ends = iter([6])

    async def log_end() -> int:
        return next(ends)

    catch_up = CatchUp(log_end, progress.wait)
    waiting = asyncio.create_task(catch_up(5.0))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    progress.advance(6)
    await asyncio.wait_for(waiting, 1.0)


async def test_catch_up_times_out_when_the_log_does_not_answer() -> None:
    progress = Progress(applied=4)

    async def log_end() -> int:
        await asyncio.Event().wait()  # a log that never answers
        return 0

    with pytest.raises(Timeout):
        await CatchUp(log_end, progress.wait)(0.05)
