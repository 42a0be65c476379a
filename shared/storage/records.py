"""What a store keeps: event records and per-stream state."""

from __future__ import annotations

from typing import Any

import msgspec

STREAM_ACTIVE = "active"
STREAM_DELETED = "deleted"
STREAM_TOMBSTONED = "tombstoned"


class EventRecord(msgspec.Struct, array_like=True, frozen=True):
    """A stored event (contract fields; `event_id` is the UUID's 16 bytes)."""

    event_id: bytes
    stream: str
    version: int
    position: int
    type: str
    data: bytes
    metadata: bytes
    content_type: str
    created_us: int
    tags: tuple[str, ...] = ()
    """DCB tags; trailing, so records stored without them decode."""

    @property
    def category(self) -> str:
        """The stream id before its first `-`."""
        return self.stream.split("-", 1)[0]


class StreamState(msgspec.Struct, array_like=True, frozen=True):
    """A stream's last version (-1 when empty), lifecycle state and metadata."""

    version: int = -1
    state: str = STREAM_ACTIVE
    metadata: dict[str, Any] = {}


record_encoder = msgspec.msgpack.Encoder()
record_decoder = msgspec.msgpack.Decoder(EventRecord)
stream_state_decoder = msgspec.msgpack.Decoder(StreamState)
