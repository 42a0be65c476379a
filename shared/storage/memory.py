"""An in-memory store with the same behaviour as the LMDB one, for unit tests of the core."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from esdb.contracts.commands import DcbItem
from esdb.shared.storage import dcb_index
from esdb.shared.storage.port import DEFAULT_SCAN_BUDGET, ITEM_TABLES, Predicate, page_of_all
from esdb.shared.storage.records import EventRecord, StreamState


class _MemoryTransaction:
    def __init__(self, committed: dict[str, StreamState]) -> None:
        self._committed = committed
        self.events: list[EventRecord] = []
        self.streams: dict[str, StreamState] = {}
        self.items: list[tuple[str, bytes, bytes | None, bool]] = []
        self.removed: list[EventRecord] = []
        self.forgotten: list[str] = []
        self.indexed: list[tuple[int, str, tuple[str, ...]]] = []

    def index_dcb(self, position: int, event_type: str, tags: tuple[str, ...]) -> None:
        self.indexed.append((position, event_type, tags))

    def delete_stream_state(self, stream: str) -> None:
        self.forgotten.append(stream)

    def delete_event(self, record: EventRecord) -> None:
        self.removed.append(record)

    def put_item(self, table: str, key: bytes, value: bytes) -> None:
        self.items.append((_table(table), key, value, False))

    def delete_item(self, table: str, key: bytes) -> None:
        self.items.append((_table(table), key, None, False))

    def delete_items(self, table: str, prefix: bytes) -> None:
        self.items.append((_table(table), prefix, None, True))

    def put_event(self, record: EventRecord) -> None:
        self.events.append(record)

    def stream_state(self, stream: str) -> StreamState | None:
        if stream in self.streams:
            return self.streams[stream]
        return None if stream in self.forgotten else self._committed.get(stream)

    def put_stream_state(self, stream: str, state: StreamState) -> None:
        self.streams[stream] = state


class MemoryStore:
    """A store held in dicts and lists; a transaction is staged and applied on success."""

    def __init__(self) -> None:
        self._events: list[EventRecord | None] = []  # None: scavenged
        self._stream_positions: dict[str, list[int | None]] = {}
        self._streams: dict[str, StreamState] = {}
        self._stream_names: list[str] = []
        self._event_ids: dict[bytes, int] = {}
        self._applied = 0
        self._items: dict[str, dict[bytes, bytes]] = {table: {} for table in ITEM_TABLES}
        self._item_keys: dict[str, list[bytes]] = {table: [] for table in ITEM_TABLES}
        self._postings = _MemoryPostings()
        self.index_steps = 0
        """DCB index entries visited so far (tests count them: conditions must not scan)."""

    def applied_sequence(self) -> int:
        return self._applied

    def last_position(self) -> int:
        return len(self._events)

    def held_reads(self) -> AbstractContextManager[None]:
        return nullcontext()

    def stream_state(self, stream: str) -> StreamState | None:
        return self._streams.get(stream)

    def event_position(self, event_id: bytes) -> int | None:
        return self._event_ids.get(event_id)

    def get_event(self, position: int) -> EventRecord | None:
        if 1 <= position <= len(self._events):
            return self._events[position - 1]
        return None

    def read_stream(
        self, stream: str, from_version: int | None, *, backward: bool, limit: int
    ) -> list[EventRecord]:
        positions = self._stream_positions.get(stream, [])
        if not positions or (from_version is None and not backward) or limit <= 0:
            return []  # forward from the end: nothing yet, as in the LMDB store
        start = len(positions) - 1 if from_version is None else from_version
        if backward:
            versions: range = range(min(start, len(positions) - 1), -1, -1)
        else:
            versions = range(max(start, 0), len(positions))
        found: list[EventRecord] = []
        for version in versions:
            position = positions[version]
            if position is not None:  # None: scavenged
                found.append(self._live(position))
                if len(found) >= limit:
                    break
        return found

    def _live(self, position: int) -> EventRecord:
        record = self._events[position - 1]
        assert record is not None
        return record

    def read_all(
        self,
        from_position: int | None,
        *,
        backward: bool,
        limit: int,
        predicate: Predicate | None = None,
        scan_budget: int = DEFAULT_SCAN_BUDGET,
    ) -> tuple[list[EventRecord], int | None]:
        last = len(self._events)
        start = (last if backward else last + 1) if from_position is None else from_position
        if backward:
            indexes: range = range(min(start, last), 0, -1)
        else:
            indexes = range(max(start, 1), last + 1)
        records: Iterator[EventRecord] = (
            record for p in indexes if (record := self._events[p - 1]) is not None
        )
        return page_of_all(
            records,
            backward=backward,
            limit=limit,
            predicate=predicate,
            scan_budget=scan_budget,
            last_position=last,
        )

    def dcb_read(
        self, items: tuple[DcbItem, ...], after: int | None, *, backward: bool, limit: int
    ) -> tuple[list[EventRecord], int]:
        found: list[EventRecord] = []
        steps = self._postings.steps
        if limit > 0:
            for position in dcb_index.matching_positions(self._postings, items, after, backward):
                found.append(self._live(position))
                if len(found) >= limit:
                    break
        self.index_steps += self._postings.steps - steps
        return found, len(self._events)

    def list_streams(self, after: str | None, limit: int) -> list[tuple[str, StreamState]]:
        start = 0 if after is None else bisect.bisect_right(self._stream_names, after)
        names = self._stream_names[start : start + limit]
        return [(name, self._streams[name]) for name in names]

    def get_item(self, table: str, key: bytes) -> bytes | None:
        return self._items[_table(table)].get(key)

    def items(
        self,
        table: str,
        prefix: bytes,
        *,
        after: bytes | None = None,
        limit: int,
        backward: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        keys = self._item_keys[_table(table)]
        matching = keys[bisect.bisect_left(keys, prefix) :]
        chosen = [k for k in matching if k.startswith(prefix)] if prefix else list(matching)
        if backward:
            chosen.reverse()
        if after is not None:
            chosen = [k for k in chosen if (k < after if backward else k > after)]
        values = self._items[table]
        return [(key, values[key]) for key in chosen[:limit]]

    def count_items(self, table: str, prefix: bytes) -> int:
        keys = self._item_keys[_table(table)]
        return sum(1 for key in keys[bisect.bisect_left(keys, prefix) :] if key.startswith(prefix))

    @contextmanager
    def transaction(self, sequence: int) -> Iterator[_MemoryTransaction]:
        txn = _MemoryTransaction(self._streams)
        yield txn
        for record in txn.events:
            if record.position != len(self._events) + 1:
                raise ValueError(f"position {record.position} is not next")
            self._events.append(record)
            self._stream_positions.setdefault(record.stream, []).append(record.position)
            self._event_ids[record.event_id] = record.position
        for position, event_type, tags in txn.indexed:
            for key, kind in dcb_index.postings_of(position, event_type, tags):
                self._postings.add(key, kind)
        for record in txn.removed:
            self._events[record.position - 1] = None
            self._stream_positions[record.stream][record.version] = None
            self._event_ids.pop(record.event_id, None)
        for stream in txn.forgotten:
            if self._streams.pop(stream, None) is not None:
                self._stream_names.remove(stream)
        for stream, state in txn.streams.items():
            if stream not in self._streams:
                bisect.insort(self._stream_names, stream)
            self._streams[stream] = state
        for table, key, value, whole_prefix in txn.items:
            if whole_prefix:
                for found, _ in self.items(table, key, limit=1 << 62):
                    self._put_item(table, found, None)
            else:
                self._put_item(table, key, value)
        self._applied = sequence

    def _put_item(self, table: str, key: bytes, value: bytes | None) -> None:
        values, keys = self._items[table], self._item_keys[table]
        if value is None:
            if values.pop(key, None) is not None:
                keys.remove(key)
            return
        if key not in values:
            bisect.insort(keys, key)
        values[key] = value

    def close(self) -> None:
        pass


class _MemoryPostings:
    """The DCB index as sorted lists of (position, value) per prefix."""

    def __init__(self) -> None:
        self._lists: dict[bytes, list[tuple[int, bytes]]] = {}
        self.steps = 0

    def add(self, key: bytes, value: bytes) -> None:
        prefix = key[:-8]
        self._lists.setdefault(prefix, []).append((dcb_index.position_of(key), value))

    def seek(self, prefix: bytes, position: int, backward: bool) -> tuple[int, bytes] | None:
        self.steps += 1
        entries = self._lists.get(prefix, [])
        if backward:
            index = bisect.bisect_right(entries, position, key=_position) - 1
            return entries[index] if index >= 0 else None
        index = bisect.bisect_left(entries, position, key=_position)
        return entries[index] if index < len(entries) else None

    def scan(self, prefix: bytes, position: int, backward: bool) -> Iterator[tuple[int, bytes]]:
        entries = self._lists.get(prefix, [])
        self.steps += 1
        if backward:
            index = bisect.bisect_right(entries, position, key=_position) - 1
            chosen = entries[index::-1] if index >= 0 else []
        else:
            chosen = entries[bisect.bisect_left(entries, position, key=_position) :]
        for entry in chosen:
            self.steps += 1
            yield entry


def _position(entry: tuple[int, bytes]) -> int:
    return entry[0]


def _table(name: str) -> str:
    if name not in ITEM_TABLES:
        raise KeyError(f"no item table {name!r}")
    return name
