"""Notifications built from read events: what the library's own constructors build, for less."""

from __future__ import annotations

import uuid

import pytest
from eventsourcing.persistence import Notification
from hypothesis import given
from hypothesis import strategies as st

from esdb.contracts.api import CompactEvent
from esdb.eventsourcing import mapping
from esdb.eventsourcing.mapping import EventMetadata, notification, notifications, uuid_of


@given(st.uuids())
def test_a_uuid_s_text_gives_back_the_same_uuid(value: uuid.UUID) -> None:
    found = uuid_of(str(value))
    assert found == value
    assert hash(found) == hash(value)
    assert str(found) == str(value)
    assert found.is_safe == uuid.SafeUUID.unknown
    assert type(found) is uuid.UUID


@pytest.mark.parametrize(
    "text",
    [
        "{12345678-1234-5678-1234-567812345678}",
        "12345678123456781234567812345678",
        "1234567_-1234-5678-1234-567812345678",  # int() takes the underscore, and so UUID
        " 2345678-1234-5678-1234-567812345678",
        "g2345678-1234-5678-1234-567812345678",
        "12345678-1234-5678-1234-56781234567",
        "order-1",
    ],
)
def test_any_other_text_is_taken_or_refused_as_the_uuid_module_does(text: str) -> None:
    try:
        expected = uuid.UUID(text)
    except ValueError:
        with pytest.raises(ValueError):
            uuid_of(text)
    else:
        assert uuid_of(text) == expected


def _event(position: int, stream: str, metadata: bytes) -> CompactEvent:
    return CompactEvent(
        event_id=uuid.uuid4().bytes,
        stream_id=stream,
        version=position - 1,
        position=position,
        event_type="dogs:Dog.Registered",
        data=b'{"name":"Fido"}',
        metadata=metadata,
        content_type="application/json",
        created_us=1,
    )


def _metadata(version: int, id_type: str = "uuid") -> bytes:
    return f'{{"originator_version":{version},"originator_id_type":"{id_type}"}}'.encode()


def test_notifications_fields_are_set_directly_on_this_library_version() -> None:
    assert mapping._SETTABLE


@pytest.mark.parametrize("settable", [True, False])
def test_notifications_are_the_library_s_own(
    monkeypatch: pytest.MonkeyPatch, settable: bool
) -> None:
    monkeypatch.setattr(mapping, "_SETTABLE", settable)
    dog = uuid.uuid4()
    events = [
        _event(1, str(dog), _metadata(1)),
        _event(2, "counter-1", _metadata(0, "str")),
        _event(3, "foreign", b'{"by":"someone else"}'),  # not written by the library
        _event(4, str(dog), _metadata(2)),
    ]
    expected = [
        Notification(
            id=position,
            originator_id=originator_id,
            originator_version=version,
            topic="dogs:Dog.Registered",
            state=b'{"name":"Fido"}',
        )
        for position, originator_id, version in ((1, dog, 1), (2, "counter-1", 0), (4, dog, 2))
    ]
    found = notifications(events)
    assert found == expected
    assert [vars(n) for n in found] == [vars(n) for n in expected]
    assert [type(n.originator_id) for n in found] == [uuid.UUID, str, uuid.UUID]
    assert notification(events[2]) is None
    assert notification(events[3]) == expected[2]
    with pytest.raises(AttributeError):  # still frozen
        found[0].id = 7  # type: ignore[misc]


def test_metadata_is_read_right_after_being_remembered() -> None:
    metadata = _metadata(5)
    first = notifications([_event(1, "a", metadata.replace(b"uuid", b"str"))])
    again = notifications([_event(2, "b", metadata.replace(b"uuid", b"str"))])
    assert [n.originator_version for n in first + again] == [5, 5]
    assert EventMetadata(5, "str") == EventMetadata(originator_version=5, originator_id_type="str")
