"""Builders for the records, requests and log entries tests need, with sensible defaults."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable

from esdb.contracts.api import ReadFilter
from esdb.contracts.commands import (
    EXPECT_ANY,
    AllQuery,
    NewEvent,
    StreamAppend,
    WriteOutcome,
    WriteRequest,
)
from esdb.contracts.log import CreateStoreOp, LogEntry
from esdb.services.writer.apply import apply_entry
from esdb.services.writer.planning import plan_batch
from esdb.shared.storage.catalog import Catalog
from esdb.shared.storage.port import Store
from esdb.shared.storage.records import EventRecord, StreamState

DEFAULT_STORE = "default"
NOW_US = 1_700_000_000_000_000

_ids = itertools.count(1)


def event_id() -> bytes:
    """A fresh, unique event id (the 16 bytes of a UUID)."""
    return uuid.UUID(int=next(_ids)).bytes


def record(stream: str, version: int, position: int, type: str = "Happened") -> EventRecord:
    """A stored event with a fresh id and payload derived from where it is."""
    return EventRecord(
        event_id=event_id(),
        stream=stream,
        version=version,
        position=position,
        type=type,
        data=f'{{"at":{position}}}'.encode(),
        metadata=b"{}",
        content_type="application/json",
        created_us=NOW_US + position,
    )


def commit(store: Store, sequence: int, events: Iterable[tuple[str, str]]) -> list[EventRecord]:
    """Append (stream, type) events after what `store` holds, in one transaction, as the
    writer would: dense positions, per-stream versions, stream states updated."""
    position = store.last_position()
    versions: dict[str, int] = {}
    written: list[EventRecord] = []
    with store.transaction(sequence) as txn:
        for stream, type_ in events:
            if stream not in versions:
                state = store.stream_state(stream)
                versions[stream] = -1 if state is None else state.version
            versions[stream] += 1
            position += 1
            written.append(record(stream, versions[stream], position, type_))
            txn.put_event(written[-1])
        for stream, version in versions.items():
            txn.put_stream_state(stream, StreamState(version=version))
    return written


def new_event(type: str = "Happened", *, id: bytes | None = None) -> NewEvent:
    """A validated event to append, with a fresh id unless one is given."""
    return NewEvent(
        event_id=id or event_id(),
        type=type,
        data=b'{"n":1}',
        metadata=b"{}",
        content_type="application/json",
    )


def append(
    stream: str, expected_version: int = EXPECT_ANY, events: int | list[NewEvent] = 1
) -> StreamAppend:
    """One stream's part of a write: `events` new events (a count) or the given ones."""
    if isinstance(events, int):
        events = [new_event() for _ in range(events)]
    return StreamAppend(stream=stream, expected_version=expected_version, events=events)


def write(*appends: StreamAppend, store: str = DEFAULT_STORE) -> WriteRequest:
    """A client write of the given appends (all or nothing)."""
    return WriteRequest(store=store, appends=list(appends))


def all_query(
    start: int | None = 1,
    *,
    backward: bool = False,
    codec: str = "msgpack",
    flt: ReadFilter | None = None,
    store: str = DEFAULT_STORE,
) -> AllQuery:
    """A validated `read_all` of up to 100 events from `start` (None: the end)."""
    return AllQuery(
        store=store,
        from_position=start,
        backward=backward,
        limit=100,
        filter=flt,
        min_position=None,
        wait_ms=0,
        codec=codec,
    )


def create_store(catalog: Catalog, name: str = DEFAULT_STORE) -> LogEntry:
    """Apply the next log entry to `catalog`: one that creates store `name`."""
    entry = LogEntry(ops=[CreateStoreOp(store=name)])
    apply_entry(catalog, catalog.applied_sequence() + 1, entry)
    return entry


def plan_and_apply(
    catalog: Catalog, *requests: WriteRequest, now_us: int = NOW_US
) -> tuple[list[WriteOutcome], LogEntry | None]:
    """Plan `requests` as one batch and apply the resulting entry (if it has ops), as the
    leader does; the outcomes and the entry applied."""
    plan = plan_batch(list(requests), catalog, now_us=now_us)
    if not plan.ops:
        return plan.outcomes, None
    entry = LogEntry(ops=plan.ops, leader="test")
    apply_entry(catalog, catalog.applied_sequence() + 1, entry)
    return plan.outcomes, entry
