"""Internal messages between gateway, writer and readers (msgpack on `esdb.internal.>`)."""

from __future__ import annotations

import msgspec

from esdb.contracts.api import AppendResult, ReadFilter
from esdb.contracts.errors import ErrorBody

# Expected versions as plain integers inside the system; exact versions are >= -1.
EXPECT_ANY = -2
EXPECT_NO_STREAM = -1
EXPECT_STREAM_EXISTS = -3


class NewEvent(msgspec.Struct, array_like=True, frozen=True):
    """A validated event to append; `event_id` is the 16 raw bytes of its UUID."""

    event_id: bytes
    type: str
    data: bytes
    metadata: bytes
    content_type: str


class StreamAppend(msgspec.Struct, array_like=True, frozen=True):
    """Events for one stream with the version the stream must be at."""

    stream: str
    expected_version: int
    events: list[NewEvent]


class WriteRequest(msgspec.Struct, array_like=True, frozen=True):
    """One client write: its appends land together or not at all."""

    store: str
    appends: list[StreamAppend]


class WriteBatch(msgspec.Struct, array_like=True, frozen=True):
    """Writes coalesced by a gateway into one message to the leader."""

    requests: list[WriteRequest]


class WriteOutcome(msgspec.Struct, array_like=True, frozen=True):
    """The result of one `WriteRequest`: `results` on success, else `error`."""

    results: list[AppendResult] | None = None
    error: ErrorBody | None = None


class WriteBatchReply(msgspec.Struct, array_like=True, frozen=True):
    """One outcome per request of a `WriteBatch`, in order."""

    outcomes: list[WriteOutcome]


class StreamQuery(msgspec.Struct, kw_only=True, frozen=True):
    """A validated `read_stream`; `from_version` None means the end of the stream."""

    store: str
    stream: str
    from_version: int | None
    backward: bool
    limit: int
    min_position: int | None
    wait_ms: int
    codec: str


class AllQuery(msgspec.Struct, kw_only=True, frozen=True):
    """A validated `read_all`; `from_position` None means the end of the log."""

    store: str
    from_position: int | None
    backward: bool
    limit: int
    filter: ReadFilter | None
    min_position: int | None
    wait_ms: int
    codec: str


class ListQuery(msgspec.Struct, kw_only=True, frozen=True):
    """A validated `list_streams`."""

    store: str
    after: str | None
    limit: int
    codec: str


class InfoQuery(msgspec.Struct, kw_only=True, frozen=True):
    """A validated `stream_info`."""

    store: str
    stream: str
    codec: str
