"""The leader's sequencer: batches every waiting write into one fenced log entry."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from esdb.contracts.commands import WriteOutcome, WriteRequest
from esdb.contracts.errors import Timeout, Unavailable
from esdb.contracts.log import LogEntry, LogOp, encode_entry
from esdb.services.writer.applier import Applier
from esdb.services.writer.log import FencedOut, ReplicatedLog
from esdb.services.writer.planning import plan_batch

log = logging.getLogger(__name__)


# Keeps a log entry well under the log stream's maximum message size (MAX_ENTRY_BYTES); a
# single request may exceed it up to the gateway's request limit.
DEFAULT_MAX_BATCH_BYTES = 2 << 20


def approximate_bytes(request: WriteRequest) -> int:
    """About how many bytes `request` adds to a log entry."""
    return sum(
        len(e.data) + len(e.metadata) + len(e.type) + len(e.content_type) + 40
        for a in request.appends
        for e in a.events
    )


class LeadershipLost(Exception):
    """The sequencer cannot go on: fenced out, or the log state is unknown after an error."""


def _now_us() -> int:
    return time.time_ns() // 1000


class Sequencer:
    """Takes writes while this node leads; one log entry and one apply per batch."""

    def __init__(
        self,
        log: ReplicatedLog,
        applier: Applier,
        *,
        node_id: str,
        max_batch_events: int,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        clock: Callable[[], int] = _now_us,
    ) -> None:
        self._log = log
        self._applier = applier
        self._node_id = node_id
        self._max_batch_events = max_batch_events
        self._max_batch_bytes = max_batch_bytes
        self._clock = clock
        self._queue: list[tuple[WriteRequest, asyncio.Future[WriteOutcome]]] = []
        self._wake = asyncio.Event()
        self._closed = False

    def submit(self, request: WriteRequest) -> asyncio.Future[WriteOutcome]:
        """Queue a write; the future resolves after its entry is durable and applied."""
        future: asyncio.Future[WriteOutcome] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_result(
                WriteOutcome(error=Unavailable("this writer is not the leader").to_body())
            )
        else:
            self._queue.append((request, future))
            self._wake.set()
        return future

    async def run(self) -> None:
        """Commit batches until closed; raises `LeadershipLost` when it must step down."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    await self._commit(self._take_batch())
                if self._closed:
                    return
        finally:
            self._closed = True
            self._fail_pending(Unavailable("the leader stepped down; retry"))

    def close(self) -> None:
        """Stop taking writes; `run` finishes the batches already queued, then returns."""
        self._closed = True
        self._wake.set()

    def _take_batch(self) -> list[tuple[WriteRequest, asyncio.Future[WriteOutcome]]]:
        taken = events = size = 0
        for request, _ in self._queue:
            count = sum(len(a.events) for a in request.appends)
            nbytes = approximate_bytes(request)
            over = events + count > self._max_batch_events or size + nbytes > self._max_batch_bytes
            if taken and over:
                break
            taken += 1
            events += count
            size += nbytes
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    async def _commit(self, batch: list[tuple[WriteRequest, asyncio.Future[WriteOutcome]]]) -> None:
        try:
            async with self._applier.lock:
                plan = plan_batch(
                    [r for r, _ in batch], self._applier.catalog, now_us=self._clock()
                )
                if plan.ops:
                    await self.append_locked(plan.ops)
        except BaseException as e:
            # Fenced out, an apply that failed, or cancelled: never leave the batch waiting.
            for _, future in batch:
                _resolve(future, WriteOutcome(error=Timeout(str(e)).to_body()))
            raise
        await self._applier.notify()
        for (_, future), outcome in zip(batch, plan.outcomes, strict=True):
            _resolve(future, outcome)

    async def append_locked(self, ops: list[LogOp]) -> int:
        """Append `ops` as one entry fenced on the applied sequence, then apply it locally.
        The caller holds the applier lock."""
        catalog = self._applier.catalog
        entry = LogEntry(ops=ops, leader=self._node_id)
        expected = catalog.applied_sequence()
        raw = encode_entry(entry)
        try:
            sequence = await self._log.append(raw, expected_last=expected)
        except FencedOut as e:
            raise LeadershipLost(
                f"fenced out at sequence {expected}: another leader appended"
            ) from e
        except Exception as e:
            # The entry may or may not be in the log; only the tail can tell, so step down.
            raise LeadershipLost(f"log append failed ({e!r}); outcome unknown") from e
        self._applier.apply_locked(sequence, entry, raw)
        return sequence

    def _fail_pending(self, error: Unavailable) -> None:
        pending, self._queue = self._queue, []
        for _, future in pending:
            _resolve(future, WriteOutcome(error=error.to_body()))


def _resolve(future: asyncio.Future[WriteOutcome], outcome: WriteOutcome) -> None:
    if not future.done():
        future.set_result(outcome)
