"""Which stored events a read may return, given their stream's lifecycle state and metadata.

Events hidden here (truncated, past `max_count` or `max_age`, of a deleted or tombstoned
stream) stay in LMDB until the scavenger removes them; no read returns them meanwhile."""

from __future__ import annotations

from collections.abc import Callable

from esdb.shared.storage.port import Predicate, StoreReader
from esdb.shared.storage.records import STREAM_TOMBSTONED, EventRecord, StreamState

MAX_COUNT = "max_count"
MAX_AGE = "max_age"
TRUNCATE_BEFORE = "truncate_before"


def first_visible_version(state: StreamState) -> int:
    """The lowest version reads return (`truncate_before`, and `max_count` from the end)."""
    first = int(state.metadata.get(TRUNCATE_BEFORE) or 0)
    max_count = state.metadata.get(MAX_COUNT)
    if max_count:
        first = max(first, state.version - int(max_count) + 1)
    return first


def oldest_visible_us(state: StreamState, now_us: int) -> int | None:
    """Events created before this (UTC µs) are past `max_age`; None when there is no limit."""
    max_age = state.metadata.get(MAX_AGE)
    return None if not max_age else now_us - int(max_age) * 1_000_000


def is_visible(record: EventRecord, state: StreamState, now_us: int) -> bool:
    """Whether reads return `record` of a stream in `state`."""
    if state.state == STREAM_TOMBSTONED:
        return False
    if not state.metadata:
        return True
    if record.version < first_visible_version(state):
        return False
    oldest = oldest_visible_us(state, now_us)
    return oldest is None or record.created_us >= oldest


def visible_in(store: StoreReader, now_us: int, also: Predicate | None) -> Predicate:
    """A `read_all` predicate: visible, and matching `also`; stream states are looked up once
    per stream per read. A stream whose every event is visible (no metadata, not tombstoned:
    most) is remembered as such, which spares its other events `is_visible`."""
    states: dict[str, StreamState | None] = {}
    lookup: Callable[[str], StreamState | None] = store.stream_state

    def predicate(record: EventRecord) -> bool:
        if also is not None and not also(record):
            return False
        stream = record.stream
        state = states.get(stream, _UNSEEN)
        if state is _UNSEEN:
            found = lookup(stream) or _NO_STATE
            state = states[stream] = None if _shows_all(found) else found
        return state is None or is_visible(record, state, now_us)

    return predicate


_UNSEEN = StreamState(state="unseen")
_NO_STATE = StreamState()


def _shows_all(state: StreamState) -> bool:
    """Whether reads return every event of a stream in `state`, whatever the event."""
    return state.state != STREAM_TOMBSTONED and not state.metadata
