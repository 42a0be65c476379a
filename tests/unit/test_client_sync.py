"""The blocking client: the async client's methods under the same names, run on an event loop
in a background thread; here over a fake NATS connection."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

import esdb.client.sync
from esdb.client import (
    Client,
    NewEvent,
    RetryPolicy,
    StreamNotFoundError,
    StreamState,
    SyncClient,
)
from esdb.client.connection import Connection
from esdb.client.sync import BlockingIterator, LoopThread
from esdb.contracts.api import AppendResult
from esdb.contracts.errors import ErrorBody, ErrorReply, Unavailable


def test_every_client_method_has_a_blocking_twin() -> None:
    methods = [n for n, _ in inspect.getmembers(Client, inspect.isfunction) if n[0] != "_"]
    assert "append" in methods
    assert all(hasattr(SyncClient, name) for name in methods)


def test_the_sync_module_offers_it_as_client() -> None:
    assert esdb.client.sync.Client is SyncClient


@dataclass
class Reply:
    data: bytes


@dataclass
class FakeNats:
    """Answers each subject with its scripted replies in turn, from the loop's thread only."""

    replies: dict[str, list[bytes]]
    threads: set[str] = field(default_factory=set)
    is_closed: bool = False
    is_draining: bool = False

    async def request(
        self, subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None = None
    ) -> Reply:
        self.threads.add(threading.current_thread().name)
        return Reply(self.replies[subject.rsplit(".", 1)[1]].pop(0))

    async def drain(self) -> None:
        self.is_closed = True


def page(versions: list[int], next_: int | None) -> bytes:
    events = [
        {
            "event_id": f"00000000-0000-4000-8000-{v:012d}",
            "stream_id": "order-1",
            "version": v,
            "position": v + 1,
            "event_type": "Placed",
            "data": b"{}",
            "metadata": b"",
            "content_type": "application/json",
            "created": "2024-01-01T00:00:00Z",
        }
        for v in versions
    ]
    return msgspec.msgpack.encode({"events": events, "next": next_, "last_version": 4})


NOT_FOUND = msgspec.msgpack.encode(ErrorReply(ErrorBody("stream_not_found", "no such stream")))
APPENDED = msgspec.msgpack.encode(
    AppendResult(first_version=0, last_version=0, first_position=9, last_position=9)
)


@pytest.fixture
def fake() -> FakeNats:
    return FakeNats({})


@pytest.fixture
def client(fake: FakeNats) -> Iterator[SyncClient]:
    connection = Connection(fake, "nats://fake", 1.0, retry=RetryPolicy.never())  # type: ignore[arg-type]
    with SyncClient(Client(connection, "default"), LoopThread()) as sync:
        yield sync


def test_calls_block_and_run_on_the_loop_thread(client: SyncClient, fake: FakeNats) -> None:
    fake.replies["append"] = [APPENDED, APPENDED]
    assert client.append("order-1", [NewEvent("Placed", {})]).last_position == 9
    assert (
        client.append_to_stream(
            "order-1", current_version=StreamState.ANY, events=NewEvent("Placed", {})
        )
        == 9
    )
    assert fake.threads == {"esdb-client-loop"}
    assert client.store == "default"


def test_errors_come_through_as_they_are(client: SyncClient, fake: FakeNats) -> None:
    fake.replies["read_stream"] = [NOT_FOUND]
    with pytest.raises(StreamNotFoundError):
        client.read_stream("order-1")


def test_async_iterators_become_plain_ones(client: SyncClient, fake: FakeNats) -> None:
    fake.replies["read_stream"] = [page([0, 1], 2), page([2, 3], 4), page([4], None)]
    events = client.iter_stream("order-1", page_size=2)
    assert isinstance(events, BlockingIterator)
    assert [e.version for e in events] == [0, 1, 2, 3, 4]
    assert list(events) == []


def test_an_iterator_closed_early_stops(client: SyncClient, fake: FakeNats) -> None:
    fake.replies["read_stream"] = [page([0, 1], 2)]
    with client.iter_stream("order-1", page_size=2) as events:
        assert next(events).version == 0
    assert list(events) == []


def test_kurrent_get_stream_returns_a_tuple(client: SyncClient, fake: FakeNats) -> None:
    fake.replies["read_stream"] = [page([0, 1], None)]
    events = client.get_stream("order-1")
    assert isinstance(events, tuple)
    assert [e.stream_position for e in events] == [0, 1]


def test_a_closed_client_refuses_calls(fake: FakeNats) -> None:
    connection = Connection(fake, "nats://fake", 1.0)  # type: ignore[arg-type]
    client = SyncClient(Client(connection, "default"), LoopThread())
    client.close()
    client.close()  # twice is fine
    assert fake.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        client.health()


def test_a_loop_thread_runs_coroutines_and_stops() -> None:
    runner = LoopThread()

    async def answer(value: Any) -> Any:
        return value

    assert runner.run(answer(42)) == 42
    runner.stop()
    assert runner.loop.is_closed()


def test_stopping_fails_a_call_another_thread_waits_on_instead_of_hanging() -> None:
    runner = LoopThread()
    started = threading.Event()
    outcome: list[BaseException | None] = []

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    def caller() -> None:
        try:
            runner.run(forever())
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=caller)
    thread.start()
    assert started.wait(5)
    runner.refuse_calls(drain_s=0.1)  # the call never finishes by itself
    with pytest.raises(Unavailable):  # and another thread may not start one now
        threading_result(lambda: runner.run(forever()))
    runner.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Unavailable)


def threading_result(call: Any) -> Any:
    """`call()` in another thread; its result, or its exception raised here."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append((True, call()))
        except BaseException as e:
            box.append((False, e))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(5)
    ok, value = box[0]
    if not ok:
        raise value
    return value
