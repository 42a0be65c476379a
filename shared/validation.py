"""Public requests to internal commands and queries; every rejection names its field."""

from __future__ import annotations

import uuid

import msgspec

from esdb.contracts.api import (
    AppendMultiRequest,
    AppendRequest,
    EventIn,
    ExpectedVersionIn,
    ListStreamsRequest,
    ReadAllRequest,
    ReadFilter,
    ReadStreamRequest,
    StreamInfoRequest,
)
from esdb.contracts.commands import (
    EXPECT_ANY,
    EXPECT_NO_STREAM,
    EXPECT_STREAM_EXISTS,
    AllQuery,
    InfoQuery,
    ListQuery,
    NewEvent,
    StreamAppend,
    StreamQuery,
    WriteRequest,
)
from esdb.contracts.errors import EsdbError, InvalidRequest, TooLarge
from esdb.contracts.event_ids import new_event_id
from esdb.shared.names import (
    CONTROL_CHARACTERS,
    check_readable_stream,
    check_stream,
)
from esdb.shared.read_filters import RegexError, compile_regex
from esdb.shared.settings import Settings
from esdb.shared.wire import Codec, decode_request, payload_bytes

MAX_TYPE_BYTES = 512
MAX_CONTENT_TYPE_BYTES = 128
_EXPECTED = {
    "any": EXPECT_ANY,
    "no_stream": EXPECT_NO_STREAM,
    "stream_exists": EXPECT_STREAM_EXISTS,
}
_json_encoder = msgspec.json.Encoder()


def expected_version(value: ExpectedVersionIn, field: str) -> int:
    """`any`/`no_stream`/`stream_exists` or an exact version >= -1, as an internal integer."""
    if isinstance(value, str):
        if value in _EXPECTED:
            return _EXPECTED[value]
    elif value >= -1:
        return value
    raise InvalidRequest(
        f"expected_version must be 'any', 'no_stream', 'stream_exists' or an integer >= -1, "
        f"not {value!r}",
        field=field,
    )


class _Accepted:
    """Event types and content types already found valid: a handful of them recur in almost
    every request, and checking one costs more than looking it up. Bounded, so a client
    sending ever new names cannot grow it without end."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._names: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def add(self, name: str) -> None:
        if len(self._names) >= self._limit:
            self._names.clear()
        self._names.add(name)


_types = _Accepted()
_content_types = _Accepted()


def _check_name(name: str, limit: int, accepted: _Accepted, field: str) -> None:
    if name in accepted:
        return
    if not name or len(name.encode()) > limit or CONTROL_CHARACTERS.search(name):
        raise InvalidRequest(
            f"{field.rpartition('.')[2]} must be 1-{limit} bytes without control characters",
            field=field,
        )
    accepted.add(name)


def _event(event: EventIn, codec: Codec, field: str, settings: Settings) -> NewEvent:
    if event.type not in _types:
        _check_name(event.type, MAX_TYPE_BYTES, _types, f"{field}.type")
    if event.content_type not in _content_types:
        _check_name(
            event.content_type, MAX_CONTENT_TYPE_BYTES, _content_types, f"{field}.content_type"
        )
    if event.event_id is None:
        event_id = new_event_id()
    else:
        try:
            event_id = uuid.UUID(event.event_id).bytes
        except ValueError as e:
            raise InvalidRequest("event_id must be a UUID", field=f"{field}.event_id") from e
    data = payload_bytes(event.data, event.content_type, codec, f"{field}.data")
    metadata = payload_bytes(event.metadata, event.content_type, codec, f"{field}.metadata")
    if len(data) + len(metadata) > settings.max_event_bytes:
        raise TooLarge(
            f"event is {len(data) + len(metadata)} bytes; the limit is {settings.max_event_bytes}",
            field=f"{field}.data",
            limit=settings.max_event_bytes,
        )
    return NewEvent(event_id, event.type, data, metadata, event.content_type)


def event_command(event: EventIn, codec: Codec, field: str, settings: Settings) -> NewEvent:
    """A validated event to append (`field` names it in errors)."""
    return _event(event, codec, field, settings)


def check_type(name: str, field: str) -> None:
    """`InvalidRequest` unless `name` is a valid event type."""
    _check_name(name, MAX_TYPE_BYTES, _types, field)


def _stream_append(
    stream: str,
    expected: ExpectedVersionIn,
    events: list[EventIn],
    codec: Codec,
    prefix: str,
    settings: Settings,
) -> StreamAppend:
    check_stream(stream, f"{prefix}stream", settings.max_stream_bytes)
    if not events:
        raise InvalidRequest("events must not be empty", field=f"{prefix}events")
    if len(events) > settings.max_events_per_append:
        raise TooLarge(
            f"{len(events)} events in one append; the limit is {settings.max_events_per_append}",
            field=f"{prefix}events",
            limit=settings.max_events_per_append,
        )
    version = expected_version(expected, f"{prefix}expected_version")
    new = [_event(e, codec, f"{prefix}events[{i}]", settings) for i, e in enumerate(events)]
    return StreamAppend(stream, version, new)


def _all_generated(event_lists: list[list[EventIn]]) -> bool:
    return all(e.event_id is None for events in event_lists for e in events)


def _unique_ids(appends: list[StreamAppend]) -> None:
    if len(appends) == 1 and len(appends[0].events) == 1:
        return  # the common append of one event
    ids = [e.event_id for a in appends for e in a.events]
    if len(set(ids)) != len(ids):
        raise InvalidRequest("event ids must be unique within a request", field="events")


def append_command(
    store: str, request: AppendRequest, codec: Codec, settings: Settings
) -> WriteRequest:
    """A validated single-stream append."""
    check_timeout(request.timeout_ms, settings)
    append = _stream_append(
        request.stream, request.expected_version, request.events, codec, "", settings
    )
    _unique_ids([append])
    return WriteRequest(store, [append], fresh_ids=_all_generated([request.events]))


def append_multi_command(
    store: str, request: AppendMultiRequest, codec: Codec, settings: Settings
) -> WriteRequest:
    """A validated multi-stream transaction."""
    check_timeout(request.timeout_ms, settings)
    if not request.appends:
        raise InvalidRequest("appends must not be empty", field="appends")
    appends = [
        _stream_append(a.stream, a.expected_version, a.events, codec, f"appends[{i}].", settings)
        for i, a in enumerate(request.appends)
    ]
    if len({a.stream for a in appends}) != len(appends):
        raise InvalidRequest("each stream may appear once in append_multi", field="appends")
    _unique_ids(appends)
    return WriteRequest(
        store, appends, fresh_ids=_all_generated([a.events for a in request.appends])
    )


def _limit(limit: int, settings: Settings) -> int:
    if not 1 <= limit <= settings.max_read_limit:
        raise InvalidRequest(
            f"limit must be between 1 and {settings.max_read_limit}", field="limit"
        )
    return limit


def _backward(direction: str) -> bool:
    if direction not in ("forward", "backward"):
        raise InvalidRequest("direction must be 'forward' or 'backward'", field="direction")
    return direction == "backward"


def _min_position(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise InvalidRequest("min_position must be >= 0", field="min_position")
    return value


def check_timeout(timeout_ms: int | None, settings: Settings) -> None:
    # Bounded: a read waiting for a far `min_position` holds its reader until then.
    if timeout_ms is not None and not 1 <= timeout_ms <= settings.max_timeout_ms:
        raise InvalidRequest(
            f"timeout_ms must be between 1 and {settings.max_timeout_ms}", field="timeout_ms"
        )


class _TimeoutOnly(msgspec.Struct):
    timeout_ms: int | None = None


def timeout_ms_of(data: bytes, codec: Codec) -> int | None:
    """A request's `timeout_ms` alone (its service validates the rest); None when it names
    none or cannot be decoded."""
    try:
        return decode_request(data, _TimeoutOnly, codec).timeout_ms
    except EsdbError:
        return None


def _wait_ms(timeout_ms: int | None, settings: Settings) -> int:
    check_timeout(timeout_ms, settings)
    return timeout_ms or settings.timeout_ms


def read_bounds(
    direction: str, limit: int, min_position: int | None, timeout_ms: int | None, settings: Settings
) -> tuple[bool, int, int | None, int]:
    """A read's validated direction (True: backward), limit, `min_position` and wait (ms)."""
    return (
        _backward(direction),
        _limit(limit, settings),
        _min_position(min_position),
        _wait_ms(timeout_ms, settings),
    )


def _start(value: int | str, field: str, *, first: int) -> int | None:
    if value == "start":
        return first
    if value == "end":
        return None
    if isinstance(value, int) and value >= 0:
        return value
    raise InvalidRequest(f"{field} must be 'start', 'end' or an integer >= 0", field=field)


def stream_query(
    store: str, request: ReadStreamRequest, codec: Codec, settings: Settings
) -> StreamQuery:
    """A validated `read_stream`."""
    return StreamQuery(
        store=store,
        stream=check_readable_stream(request.stream, max_bytes=settings.max_stream_bytes),
        from_version=_start(request.from_, "from", first=0),
        backward=_backward(request.direction),
        limit=_limit(request.limit, settings),
        min_position=_min_position(request.min_position),
        wait_ms=_wait_ms(request.timeout_ms, settings),
        codec=codec.value,
        resolve_links=request.resolve_links,
    )


def _check_filter(flt: ReadFilter | None) -> ReadFilter | None:
    if flt is not None:
        for name in ("event_type_regex", "stream_regex"):
            pattern = getattr(flt, name)
            if pattern is not None:
                try:
                    compile_regex(pattern)
                except RegexError as e:
                    raise InvalidRequest(
                        f"bad regex (RE2 syntax): {e}", field=f"filter.{name}"
                    ) from e
    return flt


def all_query(store: str, request: ReadAllRequest, codec: Codec, settings: Settings) -> AllQuery:
    """A validated `read_all`."""
    return AllQuery(
        store=store,
        from_position=_start(request.from_position, "from_position", first=1),
        backward=_backward(request.direction),
        limit=_limit(request.limit, settings),
        filter=_check_filter(request.filter),
        min_position=_min_position(request.min_position),
        wait_ms=_wait_ms(request.timeout_ms, settings),
        codec=codec.value,
        resolve_links=request.resolve_links,
    )


def list_query(
    store: str, request: ListStreamsRequest, codec: Codec, settings: Settings
) -> ListQuery:
    """A validated `list_streams`."""
    if request.after is not None and len(request.after.encode()) > settings.max_stream_bytes:
        raise TooLarge(
            f"after is a stream id, at most {settings.max_stream_bytes} bytes",
            field="after",
            limit=settings.max_stream_bytes,
        )
    check_timeout(request.timeout_ms, settings)
    return ListQuery(
        store=store, after=request.after, limit=_limit(request.limit, settings), codec=codec.value
    )


def info_query(
    store: str, request: StreamInfoRequest, codec: Codec, settings: Settings
) -> InfoQuery:
    """A validated `stream_info`."""
    check_timeout(request.timeout_ms, settings)
    stream = check_readable_stream(request.stream, max_bytes=settings.max_stream_bytes)
    return InfoQuery(store=store, stream=stream, codec=codec.value)
