"""The blocking client against a real stack: calls, iterators, subscriptions and a consumer
group, with the async client's method names."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from esdb.client import (
    CaughtUp,
    NewEvent,
    RecordedEvent,
    StreamState,
    SyncClient,
    WrongExpectedVersionError,
)
from tests.stack import Stack

DEADLINE_S = 20.0


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[SyncClient]:
    host = stack.url.split(",")[0].removeprefix("nats://")
    with SyncClient.connect(f"esdb://{host}?store=default&timeout=5") as connected:
        yield connected


def test_append_read_and_typed_errors(client: SyncClient) -> None:
    stream = _name("sync-")
    result = client.append(stream, [NewEvent("Opened", {"n": 0})], expected_version="no_stream")
    assert result.first_version == 0
    with pytest.raises(WrongExpectedVersionError) as stale:
        client.append(stream, [NewEvent("Late", {})], expected_version="no_stream")
    assert stale.value.actual_version == 0
    assert [e.event_type for e in client.read_stream(stream).events] == ["Opened"]
    assert client.stream_info(stream).version == 0
    assert client.health().status == "ok"


def test_iterators_are_plain_iterators(client: SyncClient) -> None:
    stream = _name("sync-")
    client.append(stream, [NewEvent("Counted", {"n": n}) for n in range(7)])
    assert [e.version for e in client.iter_stream(stream, page_size=3)] == list(range(7))
    backward = client.iter_stream(stream, from_="end", direction="backward", page_size=2)
    assert [e.version for e in backward][:3] == [6, 5, 4]


def test_a_catch_up_subscription_iterates_history_then_live(client: SyncClient) -> None:
    stream = _name("sync-")
    client.append(stream, [NewEvent("Counted", {"n": n}) for n in range(2)])
    with client.subscribe(stream=stream, from_version=0) as sub:
        history = [next(sub), next(sub), next(sub)]
        assert [getattr(e, "version", None) for e in history] == [0, 1, None]
        assert isinstance(history[2], CaughtUp)
        # Appended from another thread while this one waits in next().
        threading.Timer(0.2, client.append, (stream, [NewEvent("Counted", {"n": 2})])).start()
        live = next(sub)
        assert isinstance(live, RecordedEvent)
        assert live.version == 2


def test_a_consumer_group_with_blocking_acks(client: SyncClient) -> None:
    stream, group = _name("sync-"), _name("g")
    client.append(stream, [NewEvent("Counted", {"n": n}) for n in range(3)])
    client.create_subscription(group, stream=stream)
    try:
        with client.consume(group) as sub:
            for delivered in sub:
                sub.ack(delivered)
                if delivered.event.version == 2:
                    break
            sub.flush()
        deadline = time.monotonic() + DEADLINE_S
        while client.subscription_info(group).checkpoint < delivered.position:
            assert time.monotonic() < deadline, "the acks did not reach the group"
            time.sleep(0.05)
    finally:
        client.delete_subscription(group)


def test_kurrentdbclient_names_block_too(client: SyncClient) -> None:
    stream, group = _name("sync-"), _name("g")
    position = client.append_to_stream(
        stream, current_version=StreamState.NO_STREAM, events=NewEvent("Placed", {})
    )
    assert client.get_stream(stream)[0].commit_position == position
    client.create_subscription_to_stream(group, stream)
    try:
        sub = client.read_subscription_to_stream(group, stream)
        event = next(sub)
        assert (event.stream_name, event.retry_count) == (stream, 0)
        sub.ack(event)
        sub.stop()
    finally:
        client.delete_subscription(group)


def test_one_client_serves_many_threads(client: SyncClient) -> None:
    stream = _name("sync-")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: client.append(stream, [NewEvent("N", {"n": n})]), range(40)))
    assert sorted(e.json()["n"] for e in client.iter_stream(stream)) == list(range(40))
