"""Which stored events no read can return any more: the scavenger's plan, without NATS.

A stream's events below the first visible version (`truncate_before`, `max_count`, a soft
delete), older than its `max_age`, or all of a tombstoned stream's events are removed. Only
events at or below `up_to_position` are touched: the emitter has published those, so it never
meets a hole it has not gone past."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import takewhile

import msgspec

from esdb.contracts.api import ScavengeReport
from esdb.shared.storage.port import StoreReader
from esdb.shared.storage.records import STREAM_TOMBSTONED, EventRecord, StreamState
from esdb.shared.storage.visibility import first_visible_version, oldest_visible_us

CHUNK = 2_000
"""Events removed per log entry, so a scavenge never holds the writer for long."""
STREAMS_PAGE = 1_000


@dataclass(frozen=True, slots=True)
class Removal:
    """Remove `stream`'s events below `below_version`: `events` of them, `bytes` in all."""

    stream: str
    below_version: int
    events: int
    bytes: int


def removals(
    reader: StoreReader, *, now_us: int, up_to_position: int, chunk: int = CHUNK
) -> Iterator[Removal]:
    """Every removal a scavenge of `reader`'s store makes now, at most `chunk` events each."""
    after: str | None = None
    while True:
        page = reader.list_streams(after, STREAMS_PAGE)
        for stream, state in page:
            yield from _stream_removals(reader, stream, state, now_us, up_to_position, chunk)
        if len(page) < STREAMS_PAGE:
            return
        after = page[-1][0]


def _stream_removals(
    reader: StoreReader,
    stream: str,
    state: StreamState,
    now_us: int,
    up_to_position: int,
    chunk: int,
) -> Iterator[Removal]:
    if state.state == STREAM_TOMBSTONED:
        hidden_below = state.version + 1
    elif state.metadata:
        hidden_below = first_visible_version(state)
    else:
        return
    oldest = None if state.state == STREAM_TOMBSTONED else oldest_visible_us(state, now_us)
    version = 0
    while True:
        records = reader.read_stream(stream, version, backward=False, limit=chunk)
        # A prefix only: the op removes every version below its bound.
        doomed = list(
            takewhile(lambda r: _hidden(r, hidden_below, oldest, up_to_position), records)
        )
        if not doomed:
            return
        yield Removal(stream, doomed[-1].version + 1, len(doomed), sum(map(_size, doomed)))
        if len(doomed) < len(records) or len(records) < chunk:
            return
        version = doomed[-1].version + 1


def _hidden(record: EventRecord, below: int, oldest_us: int | None, up_to: int) -> bool:
    if record.position > up_to:
        return False
    return record.version < below or (oldest_us is not None and record.created_us < oldest_us)


_encoder = msgspec.msgpack.Encoder()


def _size(record: EventRecord) -> int:
    return len(_encoder.encode(record))


def report(done: list[Removal], store: str) -> ScavengeReport:
    """What a scavenge removed."""
    return ScavengeReport(
        store=store,
        streams=len({r.stream for r in done}),
        events=sum(r.events for r in done),
        bytes=sum(r.bytes for r in done),
    )
