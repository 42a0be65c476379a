"""`esdb import`: put an `esdb export` file into a store. By default exactly, through the
admin's restore writes (`restore_import`); with `--renumber`, as appends that continue the
target's streams. A re-run skips what is already stored either way."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from esdb.cli.export_command import counted, last_position_of, open_events_file
from esdb.cli.export_format import (
    EndLine,
    HeaderLine,
    LineEvent,
    Record,
    SnapshotLine,
    StoreLine,
    StreamLine,
    SubscriptionLine,
    check_header,
    decode_line,
)
from esdb.cli.output import json_line, note
from esdb.cli.progress import Progress
from esdb.cli.restore_import import (
    IN_FLIGHT,
    ForeignWrite,
    Restorer,
    RestoreReport,
    plan_requests,
)
from esdb.client import (
    AppendResult,
    AppendSpec,
    Client,
    EsdbError,
    ExpectedVersion,
    IdempotencyConflict,
    InvalidRequest,
    NewEvent,
    StreamNotFound,
    WrongExpectedVersion,
)
from esdb.shared.storage.records import STREAM_DELETED, STREAM_TOMBSTONED
from esdb.shared.storage.visibility import TRUNCATE_BEFORE

BATCH_EVENTS = 1000
BATCH_BYTES = 1 << 20  # well inside the gateway's request limit (4 MiB by default)


@dataclass
class Group:
    """Consecutive events of one stream: one append."""

    stream: str
    events: list[LineEvent]

    def expected_version(self, renumber: bool) -> ExpectedVersion:
        """Where the stream must be: right before the group's first version, or anywhere."""
        return "any" if renumber else self.events[0].version - 1


def plan_batches(
    events: Iterable[LineEvent],
    *,
    max_events: int = BATCH_EVENTS,
    max_bytes: int = BATCH_BYTES,
    keep_versions: bool = True,
) -> Iterator[list[Group]]:
    """Cut the events, in file order, into batches of groups, each batch one atomic request.

    A group is a run of one stream's events (with consecutive versions when `keep_versions`);
    a batch holds each stream once, so its appends land in file order, and it stays within
    `max_events` and `max_bytes` (a single larger event goes alone)."""
    batch: list[Group] = []
    streams: set[str] = set()
    count = size = 0
    for event in events:
        if batch and (count >= max_events or size + event.size > max_bytes):
            yield batch
            batch, streams, count, size = [], set(), 0, 0
        last = batch[-1] if batch else None
        if last is not None and _continues(last, event, keep_versions):
            last.events.append(event)
        else:
            if event.stream in streams:
                yield batch
                batch, streams, count, size = [], set(), 0, 0
            batch.append(Group(event.stream, [event]))
            streams.add(event.stream)
        count += 1
        size += event.size
    if batch:
        yield batch


def _continues(group: Group, event: LineEvent, keep_versions: bool) -> bool:
    if group.stream != event.stream:
        return False
    return not keep_versions or event.version == group.events[-1].version + 1


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
    """Appends batches in order and tells new events from ones the server already had.

    The server answers an append whose event ids are all stored with the original result,
    so an append landed now iff its positions are above every position seen before: the
    store's last one when the import began, and those of this import's earlier appends."""

    def __init__(self, client: Client, *, renumber: bool, high_water: int) -> None:
        self._client = client
        self._renumber = renumber
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
        if len(batch) == 1:
            group = batch[0]
            result = await self._client.append(
                group.stream,
                [appended(e) for e in group.events],
                expected_version=group.expected_version(self._renumber),
            )
            return [result]
        return await self._client.append_multi(
            AppendSpec(
                g.stream,
                [appended(e) for e in g.events],
                expected_version=g.expected_version(self._renumber),
            )
            for g in batch
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


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `import` to the `esdb` subcommands."""
    command = commands.add_parser(
        "import",
        parents=[common],
        help="restore an `esdb export` file into a store, exactly (idempotent, resumable)",
        description=(
            "Restore an export exactly: the same events with the same ids, versions, order "
            "and created times, every stream's state and metadata, snapshots and persistent "
            "subscriptions (checkpoints and parked events mapped to the target's positions). "
            "Uses the admin's restore writes. Events already stored are skipped, so a re-run, "
            "or a run after an interrupted one, goes on where it stopped. With --renumber the "
            "events are appended instead. See docs/backup.md."
        ),
    )
    command.add_argument("file", metavar="FILE", type=Path, help="an export ('-': stdin)")
    command.add_argument(
        "--renumber",
        action="store_true",
        help="append the events with expected version any, so streams continue from the "
        "target's versions (to add an export to streams the target already has); stream "
        "states follow, snapshots and subscriptions are left out",
    )
    command.add_argument(
        "--batch-size",
        type=_positive,
        default=BATCH_EVENTS,
        help=f"most events per request ({BATCH_EVENTS})",
    )
    command.add_argument(
        "--in-flight",
        type=_positive,
        default=IN_FLIGHT,
        help=f"requests in flight at once; they still land in file order ({IN_FLIGHT})",
    )
    command.set_defaults(run=import_events)


class ExportReader:
    """An export file's lines: the header checked first, events yielded, every other record
    kept for after the events (a file without a header is a format-1 export)."""

    def __init__(self, lines: Iterator[tuple[int, bytes]]) -> None:
        self._lines = lines
        self._first: LineEvent | Record | None = None
        self.header: HeaderLine | None = None
        self.store: StoreLine | None = None
        self.streams: list[tuple[int, StreamLine]] = []
        self.snapshots: list[SnapshotLine] = []
        self.subscriptions: list[SubscriptionLine] = []
        self.end: EndLine | None = None
        self.events_read = 0
        for number, line in lines:
            first = decode_line(line, number)
            if isinstance(first, HeaderLine):
                check_header(first)
                self.header = first
            else:
                self._first = first
            break

    def events(self) -> Iterator[LineEvent]:
        """The event lines; the other records are kept on the reader."""
        if self._first is not None:
            first, self._first = self._first, None
            if isinstance(first, LineEvent):
                self.events_read += 1
                yield first
            else:
                self._keep(0, first)
        for number, line in self._lines:
            decoded = decode_line(line, number)
            if isinstance(decoded, LineEvent):
                self.events_read += 1
                yield decoded
            else:
                self._keep(number, decoded)

    def _keep(self, number: int, record: Record) -> None:
        if self.end is not None:
            raise InvalidRequest(f"line {number} follows the end record", line=number)
        if isinstance(record, StreamLine):
            self.streams.append((number, record))
        elif isinstance(record, SnapshotLine):
            self.snapshots.append(record)
        elif isinstance(record, SubscriptionLine):
            self.subscriptions.append(record)
        elif isinstance(record, StoreLine):
            self.store = record
        elif isinstance(record, EndLine):
            self.end = record
        else:
            raise InvalidRequest(f"line {number} is a second header", line=number)

    def check_whole(self) -> None:
        """Refuse to go past the events of a file that was cut short (no end record, or
        fewer records than its header counts)."""
        if self.header is None:
            return
        if self.end is None:
            raise InvalidRequest("the file ends without its end record: it is incomplete")
        counted_here = (
            self.events_read,
            len(self.streams),
            len(self.snapshots),
            len(self.subscriptions),
        )
        expected = self.end.counts
        if counted_here != (
            expected.events,
            expected.streams,
            expected.snapshots,
            expected.subscriptions,
        ):
            raise InvalidRequest(
                f"the file holds {counted_here} events, streams, snapshots and "
                f"subscriptions, its end record says {expected}"
            )


async def import_events(client: Client, args: argparse.Namespace) -> int:
    """`esdb import`."""
    started = time.monotonic()
    with _input(args.file) as lines, Progress("import") as bar:
        reader = ExportReader(lines)
        bar.total = reader.header.counts.events if reader.header else _line_count(args.file)
        if args.renumber:
            summary, text = await _appended(client, reader, args, bar)
        else:
            summary, text = await _restored(client, reader, args, bar)
    seconds = time.monotonic() - started
    events = summary["imported"] + summary["skipped"]
    rate = round(events / seconds) if seconds else 0
    if args.json:
        print(
            json_line(
                {
                    "store": client.store,
                    **summary,
                    "seconds": round(seconds, 3),
                    "events_per_second": rate,
                }
            )
        )
    else:
        print(f"{text} into store {client.store} in {seconds:.1f} s ({rate:,} events/s)")
    return 0


async def _restored(
    client: Client, reader: ExportReader, args: argparse.Namespace, bar: Progress
) -> tuple[dict[str, Any], str]:
    start = (await client.store_status(client.store)).last_position or 0
    restorer = Restorer(client, start_position=start, in_flight=args.in_flight)
    report = restorer.report
    try:
        requests = plan_requests(reader.events(), max_events=args.batch_size)
        await restorer.send_events(requests, bar)
        reader.check_whole()
        if reader.store is not None:
            await restorer.store_config(reader.store)
        bar.phase("streams", len(reader.streams))
        await restorer.settle_streams([line for _, line in reader.streams])
        bar.advance(len(reader.streams))
        bar.phase("snapshots", len(reader.snapshots))
        await restorer.snapshots(reader.snapshots)
        bar.advance(len(reader.snapshots))
        bar.phase("subscriptions", len(reader.subscriptions))
        for line in reader.subscriptions:
            await restorer.subscription(line, report.last_position + 1)
            bar.advance()
    except (EsdbError, ForeignWrite) as e:
        pending = restorer.pending
        where = "" if pending is None else f" at line {pending.first_line}"
        text = (
            f"import stopped{where}; {counted(report.imported, 'event')} imported and "
            f"{report.skipped:,} skipped before it. Running it again goes on from there."
        )
        if isinstance(e, WrongExpectedVersion) and e.stream is not None:
            text += (
                f" The target already has stream {e.stream} (at version {e.actual_version}): "
                "--renumber appends after what is there."
            )
        note(text)
        if isinstance(e, ForeignWrite):
            raise InvalidRequest(str(e)) from e
        raise
    summary = {
        **_counts(report),
        "snapshots": report.snapshots,
        "subscriptions": report.subscriptions,
        "subscriptions_skipped": report.subscriptions_skipped,
        "parked": report.parked,
        "parked_dropped": report.parked_dropped,
    }
    text = (
        f"restored {counted(report.imported, 'event')}, skipped {report.skipped:,} already "
        f"stored ({counted(len(report.streams), 'stream')}, "
        f"{counted(report.requests, 'request')}), {counted(report.states, 'stream state')}, "
        f"{counted(report.snapshots, 'snapshot')}, "
        f"{counted(report.subscriptions, 'subscription')} "
        f"({report.subscriptions_skipped:,} already there, {report.parked:,} parked)"
    )
    return summary, text


async def _appended(
    client: Client, reader: ExportReader, args: argparse.Namespace, bar: Progress
) -> tuple[dict[str, Any], str]:
    importer = Importer(client, renumber=True, high_water=await last_position_of(client))
    sending: list[Group] = []
    settling: tuple[int, StreamLine] | None = None
    try:
        batches = plan_batches(reader.events(), max_events=args.batch_size, keep_versions=False)
        for sending in batches:
            await importer.send(sending)
            bar.advance(sum(len(g.events) for g in sending))
        sending = []
        reader.check_whole()
        for settling in reader.streams:
            await importer.settle(settling[1])
            bar.advance()
        settling = None
    except EsdbError as e:
        note(_stopped(e, sending, settling, importer.report))
        raise
    report = importer.report
    summary = {
        **_counts(report),
        "stream_states_skipped": report.states_skipped,
    }
    set_states = ""
    if report.states or report.states_skipped:
        set_states = (
            f", set {counted(report.states, 'stream state')} "
            f"({report.states_skipped:,} already set)"
        )
    text = (
        f"imported {counted(report.imported, 'event')}, skipped {report.skipped:,} already "
        f"stored ({counted(len(report.streams), 'stream')}, "
        f"{counted(report.requests, 'request')}){set_states}"
    )
    return summary, text


def _counts(report: ImportReport | RestoreReport) -> dict[str, Any]:
    """What both kinds of import report."""
    return {
        "imported": report.imported,
        "skipped": report.skipped,
        "streams": len(report.streams),
        "requests": report.requests,
        "stream_states": report.states,
    }


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def _stopped(
    error: EsdbError,
    batch: list[Group],
    settling: tuple[int, StreamLine] | None,
    report: ImportReport,
) -> str:
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
    if isinstance(error, WrongExpectedVersion) and groups:
        text += (
            f" The target's stream is at version {error.actual_version}, the file continues it "
            f"from {groups[0].events[0].version}: --renumber appends after what is there."
        )
    return text


@contextmanager
def _input(path: Path) -> Iterator[Iterator[tuple[int, bytes]]]:
    """The numbered non-blank lines of `path` (gzipped if it ends in .gz) or stdin."""
    with ExitStack() as files:
        source: IO[bytes]
        if str(path) == "-":
            source = sys.stdin.buffer
        else:
            source = files.enter_context(
                open_events_file(path, "rb", gzipped=path.name.endswith(".gz"))
            )
        yield ((n, line) for n, line in enumerate(source, start=1) if line.strip())


def _line_count(path: Path) -> int | None:
    """How many lines a plain file has (the progress bar's total); None for stdin."""
    if str(path) == "-" or path.name.endswith(".gz") or not path.is_file():
        return None
    count, last = 0, b"\n"
    with open(path, "rb") as data:
        while chunk := data.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")
