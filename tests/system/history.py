"""A history checker: record appends and their replies under load, then verify the store."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.stack import Api, read_all_events

RETRYABLE = {"timeout", "unavailable"}


@dataclass
class Acked:
    """An append the store acknowledged, with where it said the events landed."""

    stream: str
    event_ids: list[str]
    first_version: int
    first_position: int
    sent_at: float = 0.0
    """When the attempt that was acknowledged was sent (`time.monotonic()`)."""
    acked_at: float = 0.0
    """When its acknowledgement arrived."""


@dataclass
class History:
    """Every acknowledged append and every definitely failed one."""

    acked: list[Acked] = field(default_factory=list)
    failed_ids: set[str] = field(default_factory=set)
    retries: int = 0
    dcb_acked: list[tuple[list[str], int]] = field(default_factory=list)
    """`dcb_append`s acknowledged: their event ids and the position of the last one."""


async def _until_answered(
    api: Api, history: History, operation: str, body: dict[str, Any], deadline_s: float
) -> tuple[dict[str, Any], float]:
    """Send a write, again with the same ids while its outcome is unknown (a timeout, no
    leader), until it is answered otherwise or `deadline_s` passes; the reply and when the
    attempt it answers was sent (`time.monotonic()`)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    while True:
        sent_at = time.monotonic()
        try:
            reply = await api.call(operation, body, timeout=3)
        except Exception:  # a NATS-level timeout or disconnect: outcome unknown, retry
            reply = {"error": {"code": "timeout"}}
        error = reply.get("error")
        if error is None or error["code"] not in RETRYABLE or loop.time() > give_up:
            return reply, sent_at
        history.retries += 1
        await asyncio.sleep(0.05)


async def append_until_acked(
    api: Api,
    history: History,
    stream: str,
    expected: int | str,
    count: int,
    *,
    deadline_s: float = 60.0,
) -> int:
    """Append `count` events, retrying with the same ids through faults; the new version."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    body: dict[str, Any] = {
        "stream": stream,
        "expected_version": expected,
        "events": [{"event_id": i, "type": "Loaded", "data": {"id": i}} for i in ids],
        "timeout_ms": 2000,
    }
    reply, sent_at = await _until_answered(api, history, "append", body, deadline_s)
    error = reply.get("error")
    if error is not None:
        history.failed_ids.update(ids)
        raise AssertionError(f"append to {stream} failed: {error}")
    history.acked.append(
        Acked(
            stream,
            ids,
            reply["first_version"],
            reply["first_position"],
            sent_at=sent_at,
            acked_at=time.monotonic(),
        )
    )
    return int(reply["last_version"])


async def dcb_append_until_acked(
    api: Api,
    history: History,
    events: list[dict[str, Any]],
    condition: dict[str, Any] | None,
    *,
    deadline_s: float = 60.0,
) -> int | None:
    """A `dcb_append` of `events`, retried with the same ids through faults; the position of
    its last event, or None when its condition failed (then none of it may land)."""
    ids = [str(uuid.uuid4()) for _ in events]
    body: dict[str, Any] = {
        "events": [{**event, "event_id": i} for event, i in zip(events, ids, strict=True)],
        "timeout_ms": 2000,
    }
    if condition is not None:
        body["condition"] = condition
    reply, _ = await _until_answered(api, history, "dcb_append", body, deadline_s)
    error = reply.get("error")
    if error is None:
        history.dcb_acked.append((ids, int(reply["position"])))
        return int(reply["position"])
    history.failed_ids.update(ids)
    if error["code"] == "append_condition_failed":
        # A retry of an append that landed returns its position (idempotency), so a failed
        # condition means this append is not in the store.
        return None
    raise AssertionError(f"dcb_append failed: {error}")


async def verify(api: Api, history: History) -> list[dict[str, Any]]:
    """Every acked event exactly once where it was acked; versions gapless; positions dense."""
    events = await read_all_events(api)
    positions = [e["position"] for e in events]
    assert positions == list(range(1, len(events) + 1)), "global positions must be dense"
    by_id: dict[str, dict[str, Any]] = {}
    for event in events:
        assert event["event_id"] not in by_id, f"duplicate event {event['event_id']}"
        by_id[event["event_id"]] = event
    for acked in history.acked:
        for offset, event_id in enumerate(acked.event_ids):
            event = by_id.get(event_id)
            assert event is not None, f"acknowledged event {event_id} is missing"
            assert event["stream_id"] == acked.stream
            assert event["version"] == acked.first_version + offset
            assert event["position"] == acked.first_position + offset
    streams: dict[str, list[int]] = {}
    for event in events:
        streams.setdefault(event["stream_id"], []).append(event["version"])
    for stream, versions in streams.items():
        assert versions == list(range(len(versions))), f"{stream} has version gaps"
    assert not history.failed_ids & by_id.keys(), "a failed append left events behind"
    return events
