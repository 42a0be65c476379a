"""`esdb import`: put an `esdb export` file into a store. By default exactly, through the
admin's restore writes (`restore_import`); with `--renumber`, as appends that continue the
target's streams. A re-run skips what is already stored either way."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from esdb.cli.append_import import (
    Group,
    Importer,
    ImportReport,
    plan_batches,
    stopped,
)
from esdb.cli.export_command import counted, last_position_of, open_events_file
from esdb.cli.export_format import (
    EndLine,
    HeaderLine,
    LineEvent,
    ProjectionLine,
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
from esdb.cli.projection_import import restore_projections
from esdb.cli.restore_import import (
    BATCH_EVENTS,
    IN_FLIGHT,
    ForeignWrite,
    Restorer,
    RestoreReport,
    plan_requests,
)
from esdb.client import Client, EsdbError, InvalidRequest, Unauthorized, WrongExpectedVersion


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `import` to the `esdb` subcommands."""
    command = commands.add_parser(
        "import",
        parents=[common],
        help="restore an `esdb export` file into a store, exactly (idempotent, resumable)",
        description=(
            "Restore an export exactly: the same events with the same ids, versions, order "
            "and created times, every stream's state and metadata, snapshots and persistent "
            "subscriptions (checkpoints and parked events mapped to the target's positions), "
            "projections (their checkpoints mapped, their states and counts kept). "
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
        "states follow, DCB events go through dcb_append without a condition, snapshots, "
        "subscriptions and projections are left out",
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
        self.projections: list[ProjectionLine] = []
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
        elif isinstance(record, ProjectionLine):
            self.projections.append(record)
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
            len(self.projections),
        )
        expected = self.end.counts
        if counted_here != (
            expected.events,
            expected.streams,
            expected.snapshots,
            expected.subscriptions,
            expected.projections,
        ):
            raise InvalidRequest(
                f"the file holds {counted_here} events, streams, snapshots, subscriptions "
                f"and projections, its end record says {expected}"
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
    try:
        start = (await client.store_status(client.store)).last_position or 0
    except Unauthorized:
        note(
            "an exact import uses the admin's restore writes; with a tenant's credentials, "
            "--renumber appends the events instead"
        )
        raise
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
        bar.phase("projections", len(reader.projections))
        projections = await restore_projections(
            client, reader.projections, restorer.positions, report.last_position + 1
        )
        bar.advance(len(reader.projections))
    except (EsdbError, ForeignWrite) as e:
        failed = restorer.stopped_at
        where = "" if failed is None else f" at line {failed.first_line}"
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
        "projections": projections.restored,
        "projections_skipped": projections.skipped,
    }
    text = (
        f"restored {counted(report.imported, 'event')}, skipped {report.skipped:,} already "
        f"stored ({counted(len(report.streams), 'stream')}, "
        f"{counted(report.requests, 'request')}), {counted(report.states, 'stream state')}, "
        f"{counted(report.snapshots, 'snapshot')}, "
        f"{counted(report.subscriptions, 'subscription')} "
        f"({report.subscriptions_skipped:,} already there, {report.parked:,} parked), "
        f"{counted(projections.restored, 'projection')} "
        f"({projections.skipped:,} already there)"
    )
    return summary, text


async def _appended(
    client: Client, reader: ExportReader, args: argparse.Namespace, bar: Progress
) -> tuple[dict[str, Any], str]:
    importer = Importer(client, high_water=await last_position_of(client))
    sending: list[Group] = []
    settling: tuple[int, StreamLine] | None = None
    try:
        batches = plan_batches(reader.events(), max_events=args.batch_size)
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
        note(stopped(e, sending, settling, importer.report))
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
