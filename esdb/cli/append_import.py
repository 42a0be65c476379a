"""`esdb import --renumber`: an export appended, each stream after whatever the target's
holds, in file order, one request at a time; then each stream's state and metadata, with
`truncate_before` moved by however far the target's versions are from the file's. The DCB
events' `$dcb` stream goes through `dcb_append`, without a condition, in requests of its own."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from esdb.cli.export_command import counted
from esdb.cli.export_format import LineEvent, StreamLine
from esdb.cli.restore_import import BATCH_BYTES, BATCH_EVENTS
from esdb.client import (
    AppendResult,
    AppendSpec,
    Client,
    EsdbError,
    IdempotencyConflict,
    NewEvent,
    StreamNotFound,
)
from esdb.client.dcb import DcbEvent
from esdb.contracts.dcb import DCB_STREAM
from esdb.shared.storage.records import STREAM_DELETED, STREAM_TOMBSTONED
from esdb.shared.storage.visibility import TRUNCATE_BEFORE


@dataclass
class Group:
    """Consecutive events of one stream: one append."""

    stream: str
    events: list[LineEvent]


def plan_batches(
    events: Iterable[LineEvent],
    *,
    max_events: int = BATCH_EVENTS,
    max_bytes: int = BATCH_BYTES,
) -> Iterator[list[Group]]:
    """Cut the events, in file order, into batches of groups, each batch one atomic request.

    A group is a run of one stream's events; a batch holds each stream once, so its appends
    land in file order, and it stays within `max_events` and `max_bytes` (a single larger
    event goes alone). A `$dcb` group is a batch alone: `dcb_append` writes no other stream."""
    batch: list[Group] = []
    streams: set[str] = set()
    count = size = 0
    for event in events:
        if batch and (count >= max_events or size + event.size > max_bytes):
            yield batch
            batch, streams, count, size = [], set(), 0, 0
        last = batch[-1] if batch else None
        if last is not None and last.stream == event.stream:
            last.events.append(event)
        else:
            if last is not None and (
                event.stream in streams or DCB_STREAM in (event.stream, last.stream)
            ):
                yield batch
                batch, streams, count, size = [], set(), 0, 0
            batch.append(Group(event.stream, [event]))
            streams.add(event.stream)
        count += 1
        size += event.size
    if batch:
        yield batch


@dataclass
class ImportReport:
    """What an import did: events appended, events found already stored, requests sent,
    stream states given to the target and ones it already had."""

    imported: int = 0
    skipped: int = 0
    requests: int = 0
    streams: set[str] = field(default_factory=set)
    states: int = 0
    states_skipped: int = 0


def shifted(metadata: dict[str, object], offset: int) -> dict[str, object]:
    """Stream metadata whose `truncate_before` is moved by `offset` versions (never below 0):
    the same events stay hidden when the target numbers the stream differently."""
    truncate_before = metadata.get(TRUNCATE_BEFORE)
    if not isinstance(truncate_before, int) or isinstance(truncate_before, bool) or not offset:
        return dict(metadata)
    return {**metadata, TRUNCATE_BEFORE: max(0, truncate_before + offset)}


class Importer:
    """Appends batches in order, each stream after what the target has, and tells new events
    from ones the server already had.

    The server answers an append whose event ids are all stored with the original result,
    so an append landed now iff its positions are above every position seen before: the
    store's last one when the import began, and those of this import's earlier appends."""

    def __init__(self, client: Client, *, high_water: int) -> None:
        self._client = client
        self._high_water = high_water
        self.report = ImportReport()

    async def send(self, batch: list[Group]) -> None:
        """Append one batch; a batch that partly overlaps stored events (an earlier run cut
        differently) goes again group by group, then event by event."""
        try:
            results = await self._append(batch)
        except IdempotencyConflict:
            if len(batch) == 1 and len(batch[0].events) == 1:
                raise
            for group in batch:
                if len(batch) > 1:
                    await self.send([group])
                else:
                    for event in group.events:
                        await self.send([Group(group.stream, [event])])
            return
        for group, result in zip(batch, results, strict=True):
            self._count(group, result)

    async def _append(self, batch: list[Group]) -> list[AppendResult]:
        self.report.requests += 1
        if len(batch) == 1 and batch[0].stream == DCB_STREAM:
            return [await self._dcb_append(batch[0])]
        if len(batch) == 1:
            group = batch[0]
            result = await self._client.append(
                group.stream,
                [appended(e) for e in group.events],
                expected_version="any",
            )
            return [result]
        return await self._client.append_multi(
            AppendSpec(
                g.stream,
                [appended(e) for e in g.events],
                expected_version="any",
            )
            for g in batch
        )

    async def _dcb_append(self, group: Group) -> AppendResult:
        """Append DCB events unconditionally: their conditions held in the source."""
        position = await self._client.dcb_append(
            DcbEvent(
                e.event.event_type,
                e.event.data or None,
                metadata=e.event.metadata or None,
                event_id=e.event.event_id,
                content_type=e.event.content_type,
                tags=e.event.tags,
            )
            for e in group.events
        )
        first = position - len(group.events) + 1
        # dcb_append answers with a position only; the count needs no versions.
        return AppendResult(
            first_version=-1, last_version=-1, first_position=first, last_position=position
        )

    async def settle(self, line: StreamLine) -> None:
        """Give the target's stream the line's state and metadata, each change expecting the
        version the target's stream is at; what the target already has is left alone."""
        try:
            target = await self._client.stream_info(line.stream_id)
            version, state, metadata = target.version, target.state, target.metadata
        except StreamNotFound:
            version, state, metadata = -1, None, {}
        wanted = shifted(line.metadata, version - line.version)
        changed = False
        if state == STREAM_TOMBSTONED:
            pass  # nothing about it can change any more
        elif line.state == STREAM_TOMBSTONED:
            await self._client.tombstone_stream(line.stream_id, expected_version=version)
            changed = True
        elif line.state == STREAM_DELETED and version < 0:
            pass  # the target never had the deleted events
        else:
            if line.state == STREAM_DELETED and state != STREAM_DELETED:
                await self._client.delete_stream(line.stream_id, expected_version=version)
                metadata = {**metadata, TRUNCATE_BEFORE: version + 1}
                changed = True
            if wanted != metadata:
                await self._client.set_stream_metadata(
                    line.stream_id, wanted, expected_version=version
                )
                changed = True
        if changed:
            self.report.states += 1
        else:
            self.report.states_skipped += 1

    def _count(self, group: Group, result: AppendResult) -> None:
        self.report.streams.add(group.stream)
        if result.last_position <= self._high_water:
            self.report.skipped += len(group.events)
        else:
            self.report.imported += len(group.events)
            self._high_water = result.last_position


def appended(line: LineEvent) -> NewEvent:
    """An exported event as an append takes it (the target stamps its own `created`)."""
    event = line.event
    return NewEvent(
        event.event_type,
        event.data or None,
        metadata=event.metadata or None,
        event_id=event.event_id,
        content_type=event.content_type,
    )


def stopped(
    error: EsdbError,
    batch: list[Group],
    settling: tuple[int, StreamLine] | None,
    report: ImportReport,
) -> str:
    """Where an appending import stopped, and what it did before."""
    where = ""
    stream = getattr(error, "stream", None) or error.details.get("stream")
    groups = [g for g in batch if g.stream == stream] or batch[:1]
    if groups:
        first = groups[0].events[0]
        where = f" at line {first.number} (stream {first.stream}, version {first.version})"
    elif settling is not None:
        where = f" at line {settling[0]} (the state of stream {settling[1].stream_id})"
    text = (
        f"import stopped{where}; {counted(report.imported, 'event')} imported and "
        f"{report.skipped:,} skipped before it. Running it again skips what is stored."
    )
    return text
