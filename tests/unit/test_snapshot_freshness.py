"""Read-your-writes for snapshots: a request waits until its node applied the log as it stood
when the request came, and gives up with `timeout`."""

from __future__ import annotations

import asyncio

import pytest

from esdb.contracts.api import LogState
from esdb.contracts.errors import Timeout, Unavailable
from esdb.shared.cluster_view import MemoryClusterView
from esdb.shared.freshness import CatchUp
from tests.waiting import idle


async def test_catch_up_waits_for_the_log_end_it_read() -> None:
    view = MemoryClusterView(log_end=6)
    view.applied_to(4)
    waiting = asyncio.create_task(CatchUp(view)(5.0))
    await idle()
    assert not waiting.done()
    view.log_end = 9  # entries committed after the request came need not be waited for
    view.applied_to(6)
    await asyncio.wait_for(waiting, 1.0)


async def test_catch_up_of_a_node_that_stays_behind_times_out() -> None:
    view = MemoryClusterView(log_end=6)
    view.applied_to(4)
    with pytest.raises(Timeout) as caught:
        await CatchUp(view)(0.05)
    assert caught.value.details == {"sequence": 6, "applied_sequence": 4}


class SilentLog(MemoryClusterView):
    async def log_state(self, timeout: float = 5.0) -> LogState:
        await asyncio.Event().wait()  # a log that never answers
        raise AssertionError("unreachable")


async def test_catch_up_times_out_when_the_log_does_not_answer() -> None:
    with pytest.raises(Timeout):
        await CatchUp(SilentLog())(0.05)


async def test_catch_up_before_any_writer_made_the_log_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        await CatchUp(MemoryClusterView(log_end=None))(1.0)
