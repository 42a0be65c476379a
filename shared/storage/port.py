"""The storage port every store implementation provides (LMDB for real, memory for unit tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

from esdb.contracts.commands import DcbItem
from esdb.shared.storage.records import EventRecord, StreamState

Predicate = Callable[[EventRecord], bool]

# How many records one read_all may look at before it returns a partial page, so a sparse
# filter cannot hold a reader for long.
DEFAULT_SCAN_BUDGET = 100_000

# Keyed tables beside the event log of every store (subscriptions, parked events, snapshots).
ITEM_TABLES = ("subscriptions", "parked", "snapshots", "projections")


class StoreReader(Protocol):
    """Read access to one store's applied state."""

    def applied_sequence(self) -> int:
        """The last log sequence applied to this store (0 when none)."""
        ...

    def last_position(self) -> int:
        """The highest global position written (0 when empty)."""
        ...

    def held_reads(self) -> AbstractContextManager[None]:
        """Inside the `with`, this thread's `stream_state`, `event_position` and `get_event`
        read one snapshot through one transaction (a writer planning a batch)."""
        ...

    def stream_state(self, stream: str) -> StreamState | None:
        """A stream's state, or None if it never existed."""
        ...

    def event_position(self, event_id: bytes) -> int | None:
        """Where an event id is stored, for idempotency checks."""
        ...

    def get_event(self, position: int) -> EventRecord | None:
        """The event at a global position."""
        ...

    def read_stream(
        self, stream: str, from_version: int | None, *, backward: bool, limit: int
    ) -> list[EventRecord]:
        """Up to `limit` events of a stream from `from_version` (None = the end)."""
        ...

    def read_all(
        self,
        from_position: int | None,
        *,
        backward: bool,
        limit: int,
        predicate: Predicate | None = None,
        scan_budget: int = DEFAULT_SCAN_BUDGET,
    ) -> tuple[list[EventRecord], int | None]:
        """Matching events from `from_position` (None = the end) and the position to go on
        from, or None when the scan reached the end of the log."""
        ...

    def list_streams(self, after: str | None, limit: int) -> list[tuple[str, StreamState]]:
        """Streams in name order after `after`."""
        ...

    def dcb_read(
        self, items: tuple[DcbItem, ...], after: int | None, *, backward: bool, limit: int
    ) -> tuple[list[EventRecord], int]:
        """Up to `limit` DCB events matching one of `items` (none: all) beyond position
        `after`, found through the DCB index, and the last position as of that read."""
        ...

    def get_item(self, table: str, key: bytes) -> bytes | None:
        """The value of `key` in one of the `ITEM_TABLES`."""
        ...

    def items(
        self,
        table: str,
        prefix: bytes,
        *,
        after: bytes | None = None,
        limit: int,
        backward: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        """Up to `limit` (key, value) pairs of `table` whose key starts with `prefix`, in key
        order (reversed when `backward`), strictly beyond `after` when it is given."""
        ...

    def count_items(self, table: str, prefix: bytes) -> int:
        """How many keys of `table` start with `prefix` (without reading their values)."""
        ...


class StoreTransaction(Protocol):
    """One atomic write to a store, committed together with the log sequence it applies."""

    def put_event(self, record: EventRecord) -> None:
        """Store an event and index it by stream version and event id."""
        ...

    def index_dcb(self, position: int, event_type: str, tags: tuple[str, ...]) -> None:
        """Index the DCB event at `position` (stored with `put_event`) by type and tags."""
        ...

    def stream_state(self, stream: str) -> StreamState | None:
        """A stream's state as this transaction has left it so far."""
        ...

    def put_stream_state(self, stream: str, state: StreamState) -> None:
        """Set a stream's state."""
        ...

    def delete_stream_state(self, stream: str) -> None:
        """Forget a stream's state (the system store's records of removed stores)."""
        ...

    def delete_event(self, record: EventRecord) -> None:
        """Remove a stored event and its indexes (scavenging); its position stays used."""
        ...

    def put_item(self, table: str, key: bytes, value: bytes) -> None:
        """Set `key` in one of the `ITEM_TABLES`."""
        ...

    def delete_item(self, table: str, key: bytes) -> None:
        """Remove `key` from a table (nothing happens when it is absent)."""
        ...

    def delete_items(self, table: str, prefix: bytes) -> None:
        """Remove every key of a table that starts with `prefix`."""
        ...


class Store(StoreReader, Protocol):
    """A store the writer applies log entries to."""

    def transaction(self, sequence: int) -> AbstractContextManager[StoreTransaction]:
        """A write transaction that records `sequence` as applied when it commits."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


def page_of_all(
    records: Iterator[EventRecord],
    *,
    backward: bool,
    limit: int,
    predicate: Predicate | None,
    scan_budget: int,
    last_position: int,
) -> tuple[list[EventRecord], int | None]:
    """Take one `read_all` page from records in scan order: the matches and where to go on."""
    page: list[EventRecord] = []
    last: EventRecord | None = None
    scanned = 0
    keep = page.append
    if predicate is None:
        bound = min(limit, scan_budget)
        for last in records:
            keep(last)
            if len(page) >= bound:
                break
    else:
        # Every event of a `read_all` passes here: one test per record and loop.
        for last in records:
            scanned += 1
            if predicate(last):
                keep(last)
                if len(page) >= limit:
                    break
            if scanned >= scan_budget:
                break
    if last is None:
        return page, None
    last_seen = last.position
    if backward:
        return page, (last_seen - 1 if last_seen > 1 else None)
    return page, (last_seen + 1 if last_seen < last_position else None)
