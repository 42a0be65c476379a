"""The emitter's publish frames read back as messages; the message it sends for one event, and
the one it sent before it built them itself."""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from esdb.contracts.topics import EVENT_ID_HEADER, POSITION_HEADER, event_subject
from esdb.services.emitter.messages import StoreMessages
from esdb.shared.storage.records import EventRecord
from esdb.shared.wire import Codec, event_out

MAX_PAYLOAD = 8 << 20


class Published(NamedTuple):
    """One message as a subscriber gets it: subject, payload, headers."""

    subject: str
    payload: bytes
    headers: dict[str, str]


def parse_frames(data: bytes) -> list[Published]:
    """The messages in a run of HPUB commands (NATS client protocol); anything else fails."""
    messages: list[Published] = []
    at = 0
    while at < len(data):
        line_end = data.index(b"\r\n", at)
        verb, subject, header_size, total_size = data[at:line_end].decode().split(" ")
        assert verb == "HPUB", f"not a publish with headers: {data[at:line_end]!r}"
        start = line_end + 2
        header = data[start : start + int(header_size)]
        payload = data[start + int(header_size) : start + int(total_size)]
        assert data[start + int(total_size) : start + int(total_size) + 2] == b"\r\n"
        at = start + int(total_size) + 2
        lines = header.decode().split("\r\n")
        assert lines[0] == "NATS/1.0" and lines[-2:] == ["", ""], header
        headers = dict(line.split(": ", 1) for line in lines[1:-2])
        messages.append(Published(subject, payload, headers))
    return messages


def fanout_message(store: str, record: EventRecord) -> Published:
    """The message the emitter publishes for a stored event."""
    frames: list[bytes] = []
    StoreMessages(store, MAX_PAYLOAD).record_frames([record], frames)
    [message] = parse_frames(b"".join(frames))
    return message


def reference(store: str, record: EventRecord) -> Published:
    """The message as the emitter built it before: an `EventOut` encoded by msgspec, and the
    two headers as a dict (for `Client.publish`)."""
    out = event_out(record, Codec.JSON)
    return Published(
        event_subject(store, record.stream, record.type),
        msgspec.json.encode(out),
        {POSITION_HEADER: str(record.position), EVENT_ID_HEADER: out.event_id},
    )
