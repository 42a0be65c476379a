"""Event ids esdb makes are UUID version 7: unique, ordered by the millisecond they were made."""

from __future__ import annotations

import time
import uuid

from esdb.client.events import NewEvent
from esdb.client.requests import event_bodies
from esdb.contracts.event_ids import new_event_id


def test_ids_are_unique_version_7_uuids_with_the_rfc_variant() -> None:
    ids = [new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    parsed = [uuid.UUID(bytes=i) for i in ids]
    assert {u.version for u in parsed} == {7}
    assert {u.variant for u in parsed} == {uuid.RFC_4122}


def test_an_id_starts_with_the_millisecond_it_was_made() -> None:
    before = time.time_ns() // 1_000_000
    made = int.from_bytes(new_event_id()[:6], "big")
    after = time.time_ns() // 1_000_000
    assert before <= made <= after


def test_ids_made_in_later_milliseconds_sort_after_earlier_ones() -> None:
    earlier = [new_event_id() for _ in range(50)]
    deadline = time.monotonic() + 1.0
    start_ms = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 <= start_ms + 1 and time.monotonic() < deadline:
        pass  # spin past the millisecond boundary: a sleep's granularity is coarser
    later = [new_event_id() for _ in range(50)]
    assert max(earlier) < min(later)


def test_the_client_stamps_version_7_ids_and_keeps_given_ones() -> None:
    given = str(uuid.uuid4())
    bodies = event_bodies([NewEvent("T", {}), NewEvent("T", {}, event_id=given)], stamp_ids=True)
    assert bodies[0].event_id is not None
    assert uuid.UUID(bodies[0].event_id).version == 7
    assert bodies[1].event_id == given
