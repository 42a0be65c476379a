"""The emitter's core: tail one store's applied events in position order and publish each."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import msgspec

from esdb.contracts.topics import EVENT_ID_HEADER, POSITION_HEADER, event_subject
from esdb.shared.storage.port import StoreReader
from esdb.shared.storage.records import EventRecord
from esdb.shared.wire import Codec, event_out

Publish = Callable[[str, bytes, dict[str, str]], Awaitable[None]]
Checkpoint = Callable[[int], Awaitable[None]]

PAGE = 1000
CHECKPOINT_EVERY_S = 1.0
# The writer announces every applied entry; this only bounds the wait if a notice is lost.
FALLBACK_POLL_S = 0.25


_json = msgspec.json.Encoder()


def fanout_message(store: str, record: EventRecord) -> tuple[str, bytes, dict[str, str]]:
    """Subject, JSON payload (an `EventOut`) and headers of one event's fan-out message."""
    out = event_out(record, Codec.JSON)
    headers = {POSITION_HEADER: str(record.position), EVENT_ID_HEADER: out.event_id}
    return event_subject(store, record.stream, record.type), _json.encode(out), headers


class StoreFanout:
    """Publishes one store's events from `after` on, checkpointing what NATS has accepted;
    `wakeup` returns the event the next applied log entry sets."""

    def __init__(
        self,
        store: str,
        reader: Callable[[], StoreReader],
        publish: Publish,
        flush: Callable[[], Awaitable[None]],
        checkpoint: Checkpoint,
        *,
        after: int,
        wakeup: Callable[[], asyncio.Event],
    ) -> None:
        self._store = store
        self._reader = reader
        self._publish = publish
        self._flush = flush
        self._checkpoint = checkpoint
        self.emitted = after
        self._checkpointed = after
        self._wakeup = wakeup

    async def run(self) -> None:
        """Emit until cancelled; never skips a position."""
        last_checkpoint = time.monotonic()
        try:
            while True:
                ticket = self._wakeup()  # before reading, so no notice is missed
                emitted = await self.emit_available()
                now = time.monotonic()
                if (
                    self.emitted > self._checkpointed
                    and now - last_checkpoint >= CHECKPOINT_EVERY_S
                ):
                    await self.save_checkpoint()
                    last_checkpoint = now
                if not emitted:
                    # Not wait_for: on 3.11 it can swallow a cancel that lands as the wait
                    # ends, and stopping the fan-out then waited for this task for good.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(FALLBACK_POLL_S):
                            await ticket.wait()
        finally:
            if self.emitted > self._checkpointed:
                await asyncio.shield(self.save_checkpoint())

    async def emit_available(self) -> int:
        """Publish every event applied after the last one emitted; how many there were."""
        records, _ = self._reader().read_all(self.emitted + 1, backward=False, limit=PAGE)
        for record in records:
            if record.position != self.emitted + 1:
                raise RuntimeError(f"position {record.position} follows {self.emitted}: a gap")
            await self._publish(*fanout_message(self._store, record))
            self.emitted = record.position
        return len(records)

    async def save_checkpoint(self) -> None:
        """Record the emitted position through the log, once NATS has everything before it."""
        position = self.emitted
        await self._flush()
        await self._checkpoint(position)
        self._checkpointed = position
