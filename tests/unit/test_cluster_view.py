"""The cluster view's state and waits, on its memory twin: who leads, whether this node's
writer serves, applied sequences, and following the leader."""

from __future__ import annotations

import asyncio

import pytest

from esdb.contracts.errors import Timeout
from esdb.shared.cluster_view import Leadership, MemoryClusterView, follow_leader
from tests.waiting import eventually, idle


def test_this_node_leads_once_it_holds_the_lease_and_its_writer_serves() -> None:
    view = MemoryClusterView("node1")
    assert (view.holds_lease, view.leads) == (False, False)
    view.set_lease("node1")
    assert (view.holds_lease, view.leads) == (True, False)
    view.announce("node2")  # a stale announcement from a node that lost the lease
    assert not view.leads
    view.announce("node1")
    assert view.leads
    assert view.leadership.announcements == 2


def test_a_new_lease_value_needs_a_new_announcement() -> None:
    view = MemoryClusterView("node1")
    view.lead()
    view.set_lease("node1", run="run2")  # its writer restarted and took the lease back
    assert view.holds_lease and not view.leads
    view.set_lease(None)
    assert view.leadership.holder is None and not view.holds_lease


def test_a_view_of_no_node_never_holds_the_lease() -> None:
    view = MemoryClusterView(None)
    view.lead("node1")
    assert view.leadership.holder == "node1"
    assert not view.holds_lease and not view.leads


async def test_a_change_of_leadership_wakes_a_waiter_and_a_timeout_returns_as_is() -> None:
    view = MemoryClusterView("node1")
    seen = view.leadership
    waiting = asyncio.create_task(view.leadership_change(seen))
    await idle()
    assert not waiting.done()
    view.set_lease("node2")
    changed = await asyncio.wait_for(waiting, 1)
    assert changed.holder == "node2"
    assert await view.leadership_change(changed, timeout=0.01) == changed


async def test_waiting_for_an_applied_sequence() -> None:
    view = MemoryClusterView("node1")
    view.applied_to(3)
    await asyncio.wait_for(view.wait_applied(3, 5.0), 0.5)
    assert view.hearing == 0, "nothing to wait for: nobody listens"

    waiting = asyncio.create_task(view.wait_applied(5, 5.0))
    await idle()
    assert view.hearing == 1
    view.applied_to(4)
    await idle()
    assert not waiting.done()
    view.applied_to(5)
    await asyncio.wait_for(waiting, 1)
    assert view.hearing == 0


async def test_progress_on_disk_is_found_without_a_notice() -> None:
    on_disk = [1]
    view = MemoryClusterView("node1", applied_on_disk=lambda: on_disk[0])
    waiting = asyncio.create_task(view.wait_applied(2, 5.0))
    await idle()
    on_disk[0] = 2  # applied, but the notice was lost
    await asyncio.wait_for(waiting, 1)


async def test_a_node_that_stays_behind_times_out_with_both_sequences() -> None:
    view = MemoryClusterView("node1")
    view.applied_to(1)
    with pytest.raises(Timeout) as caught:
        await view.wait_applied(9, 0.05)
    assert caught.value.details == {"sequence": 9, "applied_sequence": 1}
    assert view.hearing == 0


class Activity:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")

    async def end(self) -> None:
        self.calls.append("end")


@pytest.mark.parametrize("serving", [False, True])
async def test_following_the_leader(serving: bool) -> None:
    view = MemoryClusterView("node1")
    activity = Activity()
    stop = asyncio.Event()
    following = asyncio.create_task(
        follow_leader(view, stop, start=activity.start, end=activity.end, serving=serving)
    )
    view.set_lease("node1")
    await idle()
    assert activity.calls == ([] if serving else ["start"])
    view.announce("node1")
    await eventually(lambda: activity.calls == ["start"], what="the activity to start")
    view.set_lease("node1", run="run2")  # the same node's writer again: no hand-over
    await idle()
    assert activity.calls == ["start"]
    view.lead("node2")
    await eventually(lambda: activity.calls == ["start", "end"], what="the activity to end")
    view.lead("node1")
    await eventually(lambda: len(activity.calls) == 3, what="the activity to start again")
    stop.set()
    await asyncio.wait_for(following, 1)
    assert activity.calls == ["start", "end", "start", "end"]


def test_leadership_names_its_holder() -> None:
    assert Leadership(lease=b"node3:abc").holder == "node3"
    assert Leadership().holder is None
