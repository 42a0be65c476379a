"""The live page's relay against an in-memory twin of `read_all` whose reader lags the log:
an event the fan-out published before the page subscribed, and that the reader had not yet
applied when the page read the store, still reaches the browser, once, in order."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any, cast

from esdb.client import ReadAllPage, RecordedEvent
from esdb.services.ui.access import Account
from esdb.services.ui.forms import LiveSelection
from esdb.services.ui.live import LiveStream
from esdb.services.ui.present import event_json


def _event(position: int) -> RecordedEvent:
    return RecordedEvent(
        event_id=f"e{position}", stream_id="s-1", version=position - 1, position=position,
        event_type="T", data=b"{}", metadata=b"", content_type="application/json",
        created=datetime(2026, 1, 2, tzinfo=UTC),
    )  # fmt: skip


class LaggingReads:
    """`read_all` over events 1..`logged`, of which the reader has applied `applied`; a read
    with `min_position` waits for (here: makes) the reader apply that far."""

    def __init__(self, logged: int, applied: int) -> None:
        self.logged = logged
        self.applied = applied
        self.min_positions: list[int | None] = []

    async def read_all(self, **request: Any) -> ReadAllPage:
        min_position = request.get("min_position")
        self.min_positions.append(min_position)
        if min_position is not None:
            self.applied = max(self.applied, min(min_position, self.logged))
        start, limit = request["from_position"], request["limit"]
        events = [_event(p) for p in range(start, min(self.applied, start + limit - 1) + 1)]
        more = events and events[-1].position < self.applied
        return ReadAllPage(events=events, next_position=events[-1].position + 1 if more else None)


class FakeAccount:
    def __init__(self, reads: LaggingReads) -> None:
        self._reads = reads

    def client(self, store: str) -> LaggingReads:
        return self._reads


class Browser:
    """What the page wrote, as (id, event name) pairs."""

    def __init__(self) -> None:
        self.written = b""

    async def write(self, data: bytes) -> None:
        self.written += data

    def ids(self) -> list[int]:
        return [int(i) for i in re.findall(rb"id: (\d+)\nevent: event\n", self.written)]


async def _relay_until_sent(stream: LiveStream, browser: Browser, last: int) -> None:
    relay = asyncio.create_task(stream._relay(cast(Any, browser)))
    async with asyncio.timeout(5):
        while stream.last < last:
            await asyncio.sleep(0.01)
    relay.cancel()


async def test_an_event_published_before_the_subscription_and_not_yet_readable_is_sent() -> None:
    # Resumed after 3. The log holds 1..8; the reader had applied 5 when the page caught up;
    # 6 was published live before the page subscribed; 7 and 8 arrived on the subscription.
    reads = LaggingReads(logged=8, applied=5)
    closing = asyncio.Event()
    stream = LiveStream(cast(Account, FakeAccount(reads)), "s", LiveSelection.parse({}), 3, closing)
    browser = Browser()
    await stream._catch_up(cast(Any, browser), 5, 4)
    assert browser.ids() == [4, 5]
    for position in (7, 8):
        stream._queue.append((position, event_json(_event(position))))
    stream._wake.set()
    await _relay_until_sent(stream, browser, 8)
    assert browser.ids() == [4, 5, 6, 7, 8]
    assert reads.min_positions[-1] == 6  # the hole was read once the reader had applied 6


async def test_no_hole_means_no_extra_read() -> None:
    reads = LaggingReads(logged=6, applied=5)
    stream = LiveStream(
        cast(Account, FakeAccount(reads)), "s", LiveSelection.parse({}), 3, asyncio.Event()
    )
    browser = Browser()
    await stream._catch_up(cast(Any, browser), 5, 4)
    reads_before = len(reads.min_positions)
    stream._queue.append((6, event_json(_event(6))))
    stream._wake.set()
    await _relay_until_sent(stream, browser, 6)
    assert browser.ids() == [4, 5, 6]
    assert len(reads.min_positions) == reads_before
