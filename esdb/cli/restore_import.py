"""`esdb import` without `--renumber`: an export restored exactly through the admin's restore
writes (`_sys.store_restore`, `_sys.subscription_restore`; projections: `projection_import`).

Events go in requests of up to `--batch-size` events, in file order: a request is the file's
runs of one stream each, applied in order, so the target's positions keep the file's order.
Several requests are in flight at once, and each lands only at the store position its
predecessor leaves (`expected_position`), so however they travel they land in order. Anything
stored by position (subscription checkpoints, start positions, parked events) is mapped to the
target's positions of the same events. A re-run finds what already landed (the server answers
a restore whose events are all stored with their original positions) and goes on from there."""

from __future__ import annotations

import asyncio
import bisect
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec

from esdb.cli.export_format import (
    LineEvent,
    SnapshotLine,
    StoreLine,
    StreamLine,
    SubscriptionLine,
)
from esdb.cli.progress import Progress
from esdb.client import (
    AlreadyExists,
    AppendResult,
    Client,
    EsdbError,
    IdempotencyConflict,
    WrongExpectedVersion,
)
from esdb.contracts.api import StoreConfig
from esdb.contracts.restore import (
    RestoreSnapshot,
    RestoreStream,
    SubscriptionRestoreRequest,
)
from esdb.contracts.subscriptions import ParkedEvent

BATCH_EVENTS = 1000
BATCH_BYTES = 1 << 20  # well inside the gateway's request limit (4 MiB by default)
IN_FLIGHT = 4
"""Requests in flight: enough to keep the writer's batches full while one is answered."""
RECORDS_PER_REQUEST = 500
_encoder = msgspec.msgpack.Encoder()
T = TypeVar("T")


class ForeignWrite(Exception):
    """Someone else wrote to the target store during the import, so its order cannot hold."""


@dataclass
class Request:
    """One restore request: runs of the file's events, and their source positions."""

    runs: list[RestoreStream]
    positions: list[int]
    first_line: int
    size: int = 0

    @property
    def count(self) -> int:
        """Events in the request."""
        return len(self.positions)


def plan_requests(
    events: Iterable[LineEvent], *, max_events: int = BATCH_EVENTS, max_bytes: int = BATCH_BYTES
) -> Iterator[Request]:
    """Cut events, in file order, into requests of runs (consecutive events of one stream),
    each run expecting the version its stream's previous run left (-1: the stream's first)."""
    versions: dict[str, int] = {}
    request: Request | None = None
    run: list[LineEvent] = []

    def close_run() -> None:
        if run and request is not None:
            stream = run[0].stream
            request.runs.append(
                RestoreStream(
                    stream=stream,
                    expected_version=versions.get(stream, -1),
                    first_version=run[0].version,
                    events=[e.event for e in run],
                )
            )
            versions[stream] = run[-1].version
            run.clear()

    for event in events:
        if request is not None and (
            request.count >= max_events or request.size + event.size > max_bytes
        ):
            close_run()
            yield request
            request = None
        if request is None:
            request = Request([], [], event.number)
        if run and (run[0].stream != event.stream or event.version != run[-1].version + 1):
            close_run()
        run.append(event)
        request.positions.append(event.position)
        request.size += event.size
    close_run()
    if request is not None:
        yield request


def singles(request: Request) -> Iterator[Request]:
    """The request's events, each as a request of its own, in order."""
    positions = iter(request.positions)
    for run in request.runs:
        expected = run.expected_version
        for offset, event in enumerate(run.events):
            version = run.first_version + offset
            single = RestoreStream(
                stream=run.stream,
                expected_version=expected,
                first_version=version,
                events=[event],
            )
            yield Request([single], [next(positions)], request.first_line)
            expected = version


def chunks(
    items: list[T], size_of: Callable[[T], int], *, most: int = RECORDS_PER_REQUEST
) -> Iterator[list[T]]:
    """`items` in order, cut into requests of at most `most` items and `BATCH_BYTES` (an item
    larger than that goes alone)."""
    chunk: list[T] = []
    size = 0
    for item in items:
        item_size = size_of(item)
        if chunk and (len(chunk) >= most or size + item_size > BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item_size
    if chunk:
        yield chunk


class PositionMap:
    """Source positions of the imported events and where they landed in the target."""

    def __init__(self) -> None:
        self._source = array("q")
        self._target = array("q")

    def add(self, source: Iterable[int], target: Iterable[int]) -> None:
        """Record events landed (source positions ascending, as the file has them)."""
        self._source.extend(source)
        self._target.extend(target)

    def at_or_below(self, position: int) -> int:
        """The target position of the last event at or before source `position` (0: none):
        a checkpoint, which says every event up to it is done."""
        index = bisect.bisect_right(self._source, position)
        return self._target[index - 1] if index else 0

    def at_or_above(self, position: int, after_all: int) -> int:
        """The target position of the first event at or after source `position`, else
        `after_all`: a start position."""
        index = bisect.bisect_left(self._source, position)
        return self._target[index] if index < len(self._source) else after_all

    def exactly(self, position: int) -> int | None:
        """The target position of the event at source `position`, if it was imported."""
        index = bisect.bisect_left(self._source, position)
        if index < len(self._source) and self._source[index] == position:
            return self._target[index]
        return None


@dataclass
class RestoreReport:
    """What an exact import did."""

    imported: int = 0
    skipped: int = 0
    requests: int = 0
    streams: set[str] = field(default_factory=set)
    states: int = 0
    snapshots: int = 0
    subscriptions: int = 0
    subscriptions_skipped: int = 0
    parked: int = 0
    parked_dropped: int = 0
    last_position: int = 0


@dataclass
class _Sent:
    request: Request
    expected: int
    reply: asyncio.Task[list[AppendResult]]


class Restorer:
    """Sends restore requests pipelined and in order, and the records after the events."""

    def __init__(self, client: Client, *, start_position: int, in_flight: int = IN_FLIGHT) -> None:
        self._client = client
        self._in_flight = in_flight
        self._window: deque[_Sent] = deque()
        self._next_expected = start_position
        self._landed = False  # has a request of this run written anything
        self._known_last = start_position
        self.positions = PositionMap()
        self.report = RestoreReport(last_position=start_position)
        self.versions: dict[str, int] = {}  # the version each stream's events reached
        self.stopped_at: Request | None = None
        """The request that failed, if one did (where the import stopped)."""

    async def send_events(self, requests: Iterable[Request], progress: Progress) -> None:
        """Send every request, at most `in_flight` at a time, settling them in order."""
        try:
            for request in requests:
                self._send(request, self._next_expected)
                self._next_expected += request.count
                if len(self._window) >= self._in_flight:
                    progress.advance(await self._settle(self._window.popleft()))
            while self._window:
                progress.advance(await self._settle(self._window.popleft()))
        finally:
            for sent in self._window:
                sent.reply.cancel()

    def _send(self, request: Request, expected: int) -> None:
        self.report.requests += 1
        reply = asyncio.create_task(
            self._client.restore_streams(request.runs, expected_position=expected)
        )
        self._window.append(_Sent(request, expected, reply))

    async def _settle(self, sent: _Sent) -> int:
        """Wait for the oldest request; if it did not land as predicted, send it again alone
        (the requests after it, sent on the same prediction, then go again as well)."""
        try:
            try:
                self._record(sent.request, await sent.reply)
            except (WrongExpectedVersion, IdempotencyConflict) as e:
                await self._again(sent.request, sent.expected, e)
                self._next_expected = self._known_last + sum(s.request.count for s in self._window)
        except BaseException:
            self.stopped_at = sent.request
            raise
        return sent.request.count

    async def _again(self, request: Request, expected: int, error: EsdbError) -> None:
        """Send `request` again, alone. Fenced out because it overtook an earlier request, or
        an earlier one went otherwise than predicted (it was already stored, or the start was
        stale): at the position the store is at now, which is where this import's last
        request left it (further on, something else wrote: `ForeignWrite`). Partly stored
        (an earlier run cut the file differently): event by event, each stored one answering
        as the first time."""
        while True:
            if isinstance(error, IdempotencyConflict):
                if request.count == 1:
                    raise error
                for single in singles(request):
                    await self._alone(single)
                return
            actual = error.details.get("actual_position")
            if error.details.get("field") != "expected_position" or not isinstance(actual, int):
                raise error
            if self._landed and actual > self._known_last:
                raise ForeignWrite(
                    f"the target store reached position {actual} where this import had "
                    f"written up to {self._known_last}: something else writes to it"
                ) from error
            expected = self._known_last if self._landed else actual
            try:
                self.report.requests += 1
                results = await self._client.restore_streams(
                    request.runs, expected_position=expected
                )
            except (WrongExpectedVersion, IdempotencyConflict) as e:
                error = e
                continue
            self._record(request, results)
            return

    async def _alone(self, request: Request) -> None:
        expected = self._known_last
        try:
            self.report.requests += 1
            results = await self._client.restore_streams(request.runs, expected_position=expected)
        except (WrongExpectedVersion, IdempotencyConflict) as e:
            await self._again(request, expected, e)
            return
        self._record(request, results)

    def _record(self, request: Request, results: list[AppendResult]) -> None:
        targets: list[int] = []
        for run, result in zip(request.runs, results, strict=True):
            targets.extend(range(result.first_position, result.last_position + 1))
            self.report.streams.add(run.stream)
            self.versions[run.stream] = result.last_version
        self.positions.add(request.positions, targets)
        last = results[-1].last_position
        if last > self._known_last:
            self._landed = True
            self._known_last = last
            self.report.imported += request.count
        else:
            self.report.skipped += request.count
        self.report.last_position = max(self.report.last_position, last)

    async def settle_streams(self, lines: list[StreamLine]) -> None:
        """Give every stream its state, version and metadata, a request per few hundred."""
        for chunk in chunks(lines, lambda line: len(_encoder.encode(line.metadata)) + 128):
            runs = [
                RestoreStream(
                    stream=line.stream_id,
                    expected_version=self.versions.get(line.stream_id, -1),
                    state=line.state,
                    version=line.version,
                    metadata=line.metadata,
                )
                for line in chunk
            ]
            results = await self._client.restore_streams(runs)
            self.report.requests += 1
            self.report.states += len(chunk)
            for line, result in zip(chunk, results, strict=True):
                self.versions[line.stream_id] = result.last_version
                self.report.streams.add(line.stream_id)

    async def snapshots(self, lines: list[SnapshotLine]) -> None:
        """Restore snapshots with their creation times, a request per page."""
        for page in chunks(lines, lambda s: len(s.data) + len(s.metadata) + 256):
            chunk = [RestoreSnapshot(**msgspec.structs.asdict(s)) for s in page]
            await self._client.restore_streams([], snapshots=chunk)
            self.report.requests += 1
            self.report.snapshots += len(chunk)

    async def subscription(self, line: SubscriptionLine, after_all: int) -> None:
        """Restore a persistent subscription at the target's positions of the same events;
        a parked event that was not exported (hidden since) cannot be parked again."""
        parked: list[ParkedEvent] = []
        for event in line.parked:
            target = self.positions.exactly(event.position)
            if target is None:
                self.report.parked_dropped += 1
            else:
                parked.append(
                    ParkedEvent(position=target, reason=event.reason, parked=event.parked)
                )
        request = SubscriptionRestoreRequest(
            store=self._client.store,
            subscription=line.subscription,
            selector=line.selector,
            start_position=self.positions.at_or_above(line.start_position, after_all),
            message_timeout_ms=line.message_timeout_ms,
            max_retries=line.max_retries,
            max_in_flight=line.max_in_flight,
            checkpoint=self.positions.at_or_below(line.checkpoint),
            parked=parked,
            resolve_links=line.resolve_links,
        )
        self.report.requests += 1
        try:
            await self._client.restore_subscription(request)
        except AlreadyExists:
            self.report.subscriptions_skipped += 1
            return
        self.report.subscriptions += 1
        self.report.parked += len(parked)

    async def store_config(self, line: StoreLine) -> None:
        """Give the target store the source's description and tags."""
        wanted = StoreConfig(description=line.description, tags=line.tags)
        if await self._client.store_config(self._client.store) != wanted:
            await self._client.store_config(self._client.store, wanted)
