"""The emitter's hand-built fan-out messages are, byte for byte, what the read API's `EventOut`
encoding and `nats-py`'s header dict make of the same event (the message subscribers got
before the emitter built them itself, and the contract in docs/api.md)."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esdb.contracts.api import JSON_CONTENT_TYPE
from esdb.contracts.log import StampedEvent
from esdb.services.emitter import messages
from esdb.services.emitter.messages import MessageTooLarge, StoreMessages
from esdb.shared.storage.records import EventRecord
from tests.fanout_frames import MAX_PAYLOAD, fanout_message, parse_frames, reference

_json = msgspec.json.Encoder()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
text = st.text(st.characters(codec="utf-8"), max_size=12)


@st.composite
def records(draw: st.DrawFn) -> EventRecord:
    """Stored events of every shape a store holds: JSON payloads (or none), raw bytes under
    other content types, odd stream ids and types, any time, DCB tags or none."""
    content_type = draw(
        st.sampled_from([JSON_CONTENT_TYPE, "application/octet-stream", "text/plain; ü"])
    )
    if content_type == JSON_CONTENT_TYPE:
        payloads = st.just(b"") | json_values.map(_json.encode)
    else:
        payloads = st.binary(max_size=40)
    return EventRecord(
        event_id=draw(st.binary(min_size=16, max_size=16)),
        stream=draw(text),
        version=draw(st.integers(0, 2**62)),
        position=draw(st.integers(1, 2**63 - 1)),
        type=draw(text),
        data=draw(payloads),
        metadata=draw(payloads),
        content_type=content_type,
        created_us=draw(st.integers(0, 253_402_300_799_999_999)),  # up to 9999-12-31
        tags=tuple(draw(st.lists(text.filter(bool), max_size=3))),  # DCB tags, or none
    )


@settings(max_examples=400, deadline=None)
@given(store=st.sampled_from(["default", "s_1", "a-b"]), record=records())
def test_a_stored_event_gets_the_message_its_eventout_makes(
    store: str, record: EventRecord
) -> None:
    assert fanout_message(store, record) == reference(store, record)


@settings(max_examples=100, deadline=None)
@given(
    stream=text,
    first_version=st.integers(0, 1000),
    first_position=st.integers(1, 10**9),
    events=st.lists(records(), min_size=1, max_size=5),
)
def test_a_logged_append_gets_one_message_per_event_at_consecutive_places(
    stream: str, first_version: int, first_position: int, events: list[EventRecord]
) -> None:
    stamped = [
        StampedEvent(e.event_id, e.type, e.data, e.metadata, e.content_type, e.created_us, e.tags)
        for e in events
    ]
    frames: list[bytes] = []
    StoreMessages("default", MAX_PAYLOAD).append_frames(
        stream, first_version, first_position, stamped, frames
    )
    expected = [
        reference(
            "default",
            msgspec.structs.replace(
                e, stream=stream, version=first_version + i, position=first_position + i
            ),
        )
        for i, e in enumerate(events)
    ]
    assert parse_frames(b"".join(frames)) == expected


def test_the_message_is_pinned_byte_for_byte() -> None:
    """What subscribers get; a change here changes the public contract (docs/api.md)."""
    record = EventRecord(
        event_id=uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e").bytes,
        stream="order-7 ü",
        version=3,
        position=42,
        type="Placed",
        data=b'{"total":12}',
        metadata=b"",
        content_type=JSON_CONTENT_TYPE,
        created_us=1_700_000_000_000_001,
    )
    frames: list[bytes] = []
    StoreMessages("default", MAX_PAYLOAD).record_frames([record], frames)
    body = (
        b'{"event_id":"0f8fad5b-d9cb-469f-a165-70867728950e","stream_id":"order-7 \xc3\xbc",'
        b'"version":3,"position":42,"event_type":"Placed","data":{"total":12},'
        b'"metadata":null,"content_type":"application/json",'
        b'"created":"2023-11-14T22:13:20.000001Z"}'
    )
    headers = (
        b"NATS/1.0\r\nEsdb-Position: 42\r\n"
        b"Esdb-Event-Id: 0f8fad5b-d9cb-469f-a165-70867728950e\r\n\r\n"
    )
    subject = b"esdb.events.default.order.order-7%20%C3%BC.Placed"
    assert frames == [
        b"HPUB %s %d %d\r\n%s%s\r\n"
        % (subject, len(headers), len(headers) + len(body), headers, body)
    ]


def test_caches_that_start_over_keep_every_message_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(messages, "CACHE_LIMIT", 3)
    built = StoreMessages("default", MAX_PAYLOAD)
    stored = [
        EventRecord(uuid.uuid4().bytes, f"s-{n % 5}", n, n + 1, f"T{n % 7}", b"1", b"", "text/x", n)
        for n in range(40)
    ]
    frames: list[bytes] = []
    built.record_frames(stored, frames)
    assert parse_frames(b"".join(frames)) == [reference("default", r) for r in stored]


def test_a_message_over_max_payload_is_refused() -> None:
    record = EventRecord(uuid.uuid4().bytes, "s", 0, 1, "T", b"x" * 200, b"", "text/x", 0)
    size = len(reference("default", record).payload)
    fits = StoreMessages("default", size + 200)
    fits.record_frames([record], [])
    with pytest.raises(MessageTooLarge):
        StoreMessages("default", size + 10).record_frames([record], [])
