"""Live and catch-up subscriptions against a real stack (the leader-emitter's fan-out), and
`esdb tail` as a user runs it. The stack is shared: every test uses its own names."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import pytest

from esdb.client import CaughtUp, Client, NewEvent, ReadFilter, RecordedEvent, Subscription
from esdb.contracts.topics import escape_token
from tests.stack import Stack

ESDB = str(Path(sys.executable).parent / "esdb")
DEADLINE_S = 15.0


def _uid() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with Client.connect(stack.url) as connected:
        yield connected


async def take(
    subscription: Subscription, count: int, timeout: float = DEADLINE_S
) -> list[RecordedEvent | CaughtUp]:
    """The next `count` items of a subscription, within a deadline."""
    items: list[RecordedEvent | CaughtUp] = []
    async with asyncio.timeout(timeout):
        while len(items) < count:
            items.append(await anext(subscription))
    return items


async def take_events(subscription: Subscription, count: int) -> list[RecordedEvent]:
    items = await take(subscription, count)
    assert all(isinstance(item, RecordedEvent) for item in items), items
    return [item for item in items if isinstance(item, RecordedEvent)]


async def stored(client: Client, positions: list[int]) -> list[RecordedEvent]:
    """The events at `positions` as `read_all` returns them."""
    found: list[RecordedEvent] = []
    for position in positions:
        page = await client.read_all(from_position=position, limit=1)
        assert page.events and page.events[0].position == position
        found.append(page.events[0])
    return found


async def test_live_subscriptions_receive_exactly_what_is_appended_after_they_start(
    client: Client,
) -> None:
    uid = _uid()
    category, kind = f"cat{uid}", f"Type{uid}"
    first, second = f"{category}-a", f"{category}-b"
    await client.append(first, [NewEvent(kind, {"before": True})])  # must not be delivered

    by_stream = await client.subscribe(stream=first)
    by_category = await client.subscribe(category=category)
    by_type = await client.subscribe(event_type=kind)
    everything = await client.subscribe(all=True)
    try:
        a0 = await client.append(first, [NewEvent(kind, {"n": 0}, metadata={"m": 1})])
        b = await client.append(second, [NewEvent("Other", {"n": 1}), NewEvent(kind, {"n": 2})])
        a1 = await client.append(first, [NewEvent("Other", {"n": 3})])
        elsewhere = await client.append(f"x{uid}-1", [NewEvent(kind, {"n": 4})])

        positions = {
            "stream": [a0.last_position, a1.last_position],
            "category": [
                a0.last_position,
                *range(b.first_position, b.last_position + 1),
                a1.last_position,
            ],
            "type": [a0.last_position, b.last_position, elsewhere.last_position],
        }
        for name, subscription in (
            ("stream", by_stream),
            ("category", by_category),
            ("type", by_type),
        ):
            events = await take_events(subscription, len(positions[name]))
            # Every field equal to what a read returns: data, metadata, ids, created.
            assert events == await stored(client, positions[name]), name

        # Nothing else was delivered: the next event is one appended now.
        sentinel = await client.append(first, [NewEvent(kind, {"n": 5})])
        for subscription in (by_stream, by_category, by_type):
            (event,) = await take_events(subscription, 1)
            assert event.position == sentinel.last_position

        # The whole store, in order and dense (other tests' events included).
        mine = set(positions["category"] + positions["type"] + [sentinel.last_position])
        seen: list[RecordedEvent] = []
        async with asyncio.timeout(DEADLINE_S):
            while not mine <= {event.position for event in seen}:
                seen += await take_events(everything, 1)
        assert seen[0].position <= a0.last_position
        assert [e.position for e in seen] == list(range(seen[0].position, seen[-1].position + 1))
    finally:
        for subscription in (by_stream, by_category, by_type, everything):
            await subscription.close()


@pytest.mark.parametrize(
    ("category", "kind"),
    [
        ("dots.and spaces", "Order.Placed v2"),
        ("wild*card>s", "*"),
        ("ünïcødé✓", ">"),
        ("%pre_escaped%2E", "per%cent"),
    ],
)
async def test_special_characters_in_streams_and_types_round_trip(
    client: Client, category: str, kind: str
) -> None:
    uid = _uid()
    category = f"{category}{uid}"
    stream = f"{category}-id.with.dots *>é"
    subscriptions = [
        await client.subscribe(stream=stream),
        await client.subscribe(category=category),
        await client.subscribe(event_type=kind + uid),
        await client.subscribe(pattern=f"{escape_token(category)}.*.{escape_token(kind + uid)}"),
    ]
    try:
        result = await client.append(
            stream,
            [
                NewEvent(kind + uid, {"text": "héllo . * >"}),
                NewEvent(kind + uid, b"\x00\xffbinary", content_type="application/octet-stream"),
            ],
        )
        expected = await stored(client, [result.first_position, result.last_position])
        assert expected[1].data == b"\x00\xffbinary"
        for subscription in subscriptions:
            assert await take_events(subscription, 2) == expected, subscription.selector
        # History by a pattern naming the stream: read_all matches the id with an RE2 regex.
        history = await client.subscribe(
            pattern=f"*.{escape_token(stream)}.>", from_position=result.first_position
        )
        subscriptions.append(history)
        assert await take(history, 2) == expected
    finally:
        for subscription in subscriptions:
            await subscription.close()


async def test_catch_up_yields_history_then_caught_up_then_live_without_gap_or_duplicate(
    client: Client,
) -> None:
    uid = _uid()
    category = f"catchup{uid}"
    history = 6
    for n in range(history):
        await client.append(f"{category}-{n % 2}", [NewEvent("Old", {"n": n})])
        await client.append(f"noise{uid}-1", [NewEvent("Old", {"n": n})])
    live = 40

    async def append_concurrently() -> None:
        for n in range(live):
            await client.append(f"{category}-{n % 3}", [NewEvent("New", {"n": n})])

    # Small pages make the history read slow enough that appends land during it.
    subscription = await client.subscribe(category=category, from_position=1, page_size=1)
    appending = asyncio.create_task(append_concurrently())
    try:
        items = await take(subscription, history + live + 1)
        await appending
    finally:
        appending.cancel()
        await subscription.close()

    markers = [i for i, item in enumerate(items) if isinstance(item, CaughtUp)]
    assert len(markers) == 1
    marker = items[markers[0]]
    assert isinstance(marker, CaughtUp)
    events = [item for item in items if isinstance(item, RecordedEvent)]
    assert all(e.position <= marker.position for e in events[: markers[0]])
    assert all(e.position > marker.position for e in events[markers[0] :])
    assert markers[0] >= history
    # Exactly the category's events, each once, in position order.
    expected = [
        e async for e in client.iter_all(filter=ReadFilter(category=category), page_size=1000)
    ]
    assert events == expected
    assert [e.json()["n"] for e in events] == list(range(history)) + list(range(live))


async def test_catch_up_of_a_stream_from_a_version(client: Client) -> None:
    stream = f"ver{_uid()}-1"
    await client.append(stream, [NewEvent("E", {"n": n}) for n in range(5)])
    async with client.subscribe(stream=stream, from_version=3) as subscription:
        items = await take(subscription, 3)
        later = await client.append(stream, [NewEvent("E", {"n": 5})])
        (event,) = await take_events(subscription, 1)
    assert [item.json()["n"] for item in items[:2] if isinstance(item, RecordedEvent)] == [3, 4]
    assert isinstance(items[2], CaughtUp)
    assert event.position == later.last_position


class Lines:
    """The lines a pipe yields, read by a thread, taken with a deadline."""

    def __init__(self, pipe: IO[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._lines.put(line.rstrip("\n"))

    async def next(self, timeout: float = DEADLINE_S) -> str:
        try:
            return await asyncio.to_thread(self._lines.get, timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s") from None


def _tail(stack: Stack, *args: str) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ESDB_")}
    return subprocess.Popen(
        [ESDB, "tail", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**environment, "ESDB_URL": stack.url},
    )


async def _stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + DEADLINE_S
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # polling a process, not waiting on state
    if process.poll() is None:
        process.kill()
    return process.wait()


async def test_tail_prints_appended_events_and_stops_on_ctrl_c(
    stack: Stack, client: Client
) -> None:
    stream = f"tail{_uid()}-1"
    process = _tail(stack, stream)
    try:
        assert process.stdout is not None and process.stderr is not None
        stdout, stderr = Lines(process.stdout), Lines(process.stderr)
        assert (await stderr.next()).startswith("-- caught up at position ")
        result = await client.append(stream, [NewEvent("Tailed", {"hello": "tail"})])
        line = await stdout.next()
        assert line.split() == [
            str(result.last_position),
            f"{stream}@0",
            "Tailed",
            '{"hello":"tail"}',
        ]
    finally:
        code = await _stop(process)
    assert code == 0


async def test_tail_from_start_prints_history_then_live_as_json(
    stack: Stack, client: Client
) -> None:
    category = f"tailcat{_uid()}"
    old = await client.append(f"{category}-1", [NewEvent("Old", {"n": 0})])
    process = _tail(stack, "--category", category, "--from-start", "--json")
    try:
        assert process.stdout is not None and process.stderr is not None
        stdout, stderr = Lines(process.stdout), Lines(process.stderr)
        first = json.loads(await stdout.next())
        assert (first["position"], first["data"]) == (old.last_position, {"n": 0})
        caught_up = await stderr.next()
        assert caught_up.startswith("-- caught up at position ")
        assert int(caught_up.split()[-2]) >= old.last_position
        new = await client.append(f"{category}-2", [NewEvent("New", {"n": 1})])
        second = json.loads(await stdout.next())
        assert (second["position"], second["stream_id"], second["data"]) == (
            new.last_position,
            f"{category}-2",
            {"n": 1},
        )
    finally:
        code = await _stop(process)
    assert code == 0
