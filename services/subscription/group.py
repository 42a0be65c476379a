"""One persistent subscription's delivery: at-least-once, bounded in flight, never stalled.

Every selected event from the checkpoint on is delivered, in position order, to whichever
consumer of the queue group NATS picks, until it is acked, skipped or parked. A delivery
that is nacked with `retry` or not answered within the message timeout is delivered again;
after `max_retries` redeliveries it is parked. The checkpoint (every selected event at or
below it is settled) and the parked events go through the log, parks in the same entry as
the checkpoint that passes them, so a failover resumes from the checkpoint with nothing
skipped; what was delivered after it is delivered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from esdb.contracts.errors import EsdbError
from esdb.contracts.log import CheckpointOp, LogOp, ParkOp, UnparkOp
from esdb.contracts.subscriptions import (
    ATTEMPT_HEADER,
    ConsumerInfo,
    SubscriptionDefinition,
    delivery_subject,
)
from esdb.contracts.topics import EVENT_ID_HEADER, POSITION_HEADER
from esdb.shared.links import resolve_links
from esdb.shared.storage import item_keys
from esdb.shared.storage.port import Predicate, StoreReader
from esdb.shared.storage.records import EventRecord
from esdb.shared.wire import Codec, event_out

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, dict[str, str], str], Awaitable[None]]
LogOps = Callable[[list[LogOp]], Awaitable[None]]

CHECKPOINT_EVERY_S = 1.0
TICK_S = 0.1
# A consumer that said it is full gets no new delivery from this one for a moment.
BUSY_BACKOFF_S = 0.02
# With no consumer at all, one delivery is tried this often until one answers.
NO_CONSUMER_RETRY_S = 0.25
# A consumer not heard from for this long no longer widens the in-flight window.
CONSUMER_IDLE_S = 30.0
READ_PAGE = 500
_json = msgspec.json.Encoder()


@dataclass(slots=True)
class Delivery:
    """One event on its way to a consumer."""

    record: EventRecord
    attempt: int = 1
    deadline: float = 0.0
    not_before: float = 0.0
    consumer: str | None = None
    replay: bool = False
    """A parked event replayed: settling it removes it from the parked events."""


@dataclass(slots=True)
class _Consumer:
    last_seen: float


class ConsumerGroup:
    """The delivery state of one subscription on the active subscription service."""

    def __init__(
        self,
        store: str,
        definition: SubscriptionDefinition,
        *,
        checkpoint: int,
        reader: Callable[[], StoreReader],
        predicate: Predicate | None,
        publish: Publish,
        log_ops: LogOps,
        reply_prefix: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.definition = definition
        self.subject = delivery_subject(store, definition.name)
        self.checkpoint = max(checkpoint, definition.start_position - 1)
        self._checkpointed = self.checkpoint
        self._cursor = self.checkpoint + 1
        self._reader = reader
        self._predicate = predicate
        self._publish = publish
        self._log_ops = log_ops
        self._reply_base = reply_prefix
        self._reply_prefix = f"{reply_prefix}.{store}.{definition.name}"
        self._clock = clock
        self._ready: deque[Delivery] = deque()
        self._backoff: deque[Delivery] = deque()
        self._in_flight: dict[int, Delivery] = {}
        self._to_park: dict[int, tuple[Delivery, str]] = {}
        self._to_unpark: set[int] = set()
        self._replay_after: int | None = None
        self._consumers: dict[str, _Consumer] = {}
        self._kick = asyncio.Event()
        self._no_consumer_until: float | None = None
        self._last_checkpoint_at = clock()

    def restarted(self) -> ConsumerGroup:
        """A fresh group from the last checkpoint logged (what a new leader would start)."""
        return ConsumerGroup(
            self.store,
            self.definition,
            checkpoint=self._checkpointed,
            reader=self._reader,
            predicate=self._predicate,
            publish=self._publish,
            log_ops=self._log_ops,
            reply_prefix=self._reply_base,
            clock=self._clock,
        )

    # -- answers from consumers ----------------------------------------------------------

    def receipt(self, position: int, consumer: str, accepted: bool) -> None:
        """A consumer took a delivery, or is full and handed it back."""
        now = self._clock()
        self._seen(consumer)
        delivery = self._in_flight.get(position)
        if delivery is None:
            return
        if accepted:
            delivery.consumer = consumer
            return
        del self._in_flight[position]
        delivery.not_before = now + BUSY_BACKOFF_S
        self._backoff.append(delivery)

    def unheard(self, position: int) -> None:
        """NATS found no consumer for a delivery (status 503): it goes back to the front,
        uncounted, and the group probes with one delivery at a time until one shows up."""
        delivery = self._in_flight.pop(position, None)
        if delivery is None:
            return
        self._no_consumer_until = self._clock() + NO_CONSUMER_RETRY_S
        self._ready.appendleft(delivery)
        self._ready = deque(sorted(self._ready, key=lambda d: d.record.position))

    def ack(self, positions: list[int], consumer: str | None = None) -> int:
        """Settle deliveries; how many were awaiting an answer."""
        self._seen(consumer)
        settled = 0
        for position in positions:
            delivery = self._in_flight.pop(position, None)
            if delivery is None:
                continue
            settled += 1
            if delivery.replay:
                self._to_unpark.add(position)
        self._kick.set()
        return settled

    def nack(self, positions: list[int], action: str, reason: str, consumer: str | None) -> int:
        """Answer failed deliveries: `retry` (counts as an attempt), `park`, `skip`, or `stop`
        (the consumer leaves; the delivery goes to another without counting)."""
        self._seen(consumer)
        if action == "stop" and consumer is not None:
            self._consumers.pop(consumer, None)
        settled = 0
        for position in positions:
            delivery = self._in_flight.pop(position, None)
            if delivery is None:
                continue
            settled += 1
            if action == "retry":
                self._failed(delivery, reason or "nacked")
            elif action == "park":
                self._park(delivery, reason or "parked by a consumer")
            elif action == "skip":
                if delivery.replay:
                    self._to_unpark.add(position)
            else:
                delivery.consumer = None
                self._backoff.appendleft(delivery)
        self._kick.set()
        return settled

    def replay_parked(self) -> None:
        """Deliver the parked events again, a page at a time, from the first."""
        self._replay_after = 0
        self._kick.set()

    def _seen(self, consumer: str | None) -> None:
        self._no_consumer_until = None
        if consumer is not None:
            self._consumers[consumer] = _Consumer(self._clock())

    # -- delivery ------------------------------------------------------------------------

    async def run(self, wakeup: Callable[[], asyncio.Event]) -> None:
        """Deliver until cancelled; `wakeup` returns the event set when entries are applied."""
        try:
            while True:
                ticket = wakeup()
                self._kick.clear()
                self.expire()
                await self.fill()
                await self.flush()
                waits = [asyncio.ensure_future(e.wait()) for e in (ticket, self._kick)]
                try:
                    timeout = BUSY_BACKOFF_S if self._backoff else TICK_S
                    await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waits:
                        waiter.cancel()
        finally:
            with contextlib.suppress(EsdbError):
                await asyncio.shield(self.flush(force=True))

    def window(self) -> int:
        """How many deliveries may await an answer: `max_in_flight` per active consumer, or
        while no consumer is known to exist, one probe at a time (none before it is due)."""
        now = self._clock()
        if self._no_consumer_until is not None:
            return 0 if now < self._no_consumer_until else 1
        active = sum(1 for c in self._consumers.values() if now - c.last_seen < CONSUMER_IDLE_S)
        return self.definition.max_in_flight * max(1, active)

    def expire(self) -> None:
        """Deliveries past their deadline count as failed attempts."""
        now = self._clock()
        expired = [d for d in self._in_flight.values() if d.deadline <= now]
        for delivery in expired:
            del self._in_flight[delivery.record.position]
            self._failed(delivery, "message timeout")

    async def fill(self) -> int:
        """Send deliveries until the window is full or nothing is left; how many were sent."""
        sent = 0
        window = self.window()
        while len(self._in_flight) < window:
            delivery = self._next_delivery(window)
            if delivery is None:
                break
            await self._send(delivery)
            sent += 1
        return sent

    def _next_delivery(self, window: int) -> Delivery | None:
        if self._backoff and self._backoff[0].not_before <= self._clock():
            return self._backoff.popleft()
        if not self._ready:
            room = window - len(self._in_flight) - len(self._backoff)
            if room <= 0:
                return None
            if self._replay_after is not None:
                self._read_parked(room)
            else:
                self._read_store(room)
        return self._ready.popleft() if self._ready else None

    def _read_store(self, room: int) -> None:
        reader = self._reader()
        last = reader.last_position()
        if self._cursor > last:
            return
        records, next_position = reader.read_all(
            self._cursor, backward=False, limit=min(room, READ_PAGE), predicate=self._predicate
        )
        self._ready.extend(Delivery(record) for record in self._resolved(reader, records))
        if next_position is not None:
            self._cursor = next_position
        else:
            self._cursor = max(self._cursor, last + 1, records[-1].position + 1 if records else 0)

    def _read_parked(self, room: int) -> None:
        reader = self._reader()
        prefix = item_keys.parked_prefix(self.definition.name)
        after = item_keys.parked_key(self.definition.name, self._replay_after or 0)
        page = reader.items(item_keys.PARKED, prefix, after=after, limit=min(room, READ_PAGE))
        if not page:
            self._replay_after = None
            return
        for key, _ in page:
            position = item_keys.parked_position(key)
            self._replay_after = position
            if position in self._in_flight or position in self._to_unpark:
                continue
            record = reader.get_event(position)
            resolved = self._resolved(reader, [] if record is None else [record])
            if not resolved:
                self._to_unpark.add(position)  # scavenged since: nothing left to deliver
            else:
                self._ready.append(Delivery(resolved[0], replay=True))

    def _resolved(self, reader: StoreReader, records: list[EventRecord]) -> list[EventRecord]:
        """`records`, with links resolved when the group asks for it (links to events that
        can no longer be read are passed over: the cursor moves past them)."""
        if not self.definition.resolve_links:
            return records
        return resolve_links(reader, records, time.time_ns() // 1000)

    async def _send(self, delivery: Delivery) -> None:
        record = delivery.record
        out = event_out(record, Codec.JSON)
        headers = {
            POSITION_HEADER: str(record.position),
            EVENT_ID_HEADER: out.event_id,
            ATTEMPT_HEADER: str(delivery.attempt),
        }
        delivery.deadline = self._clock() + self.definition.message_timeout_ms / 1000
        delivery.consumer = None
        self._in_flight[record.position] = delivery
        reply = f"{self._reply_prefix}.{record.position}"
        await self._publish(self.subject, _json.encode(out), headers, reply)

    def _failed(self, delivery: Delivery, reason: str) -> None:
        if delivery.attempt > self.definition.max_retries:
            self._park(delivery, f"{reason} (attempt {delivery.attempt})")
            return
        delivery.attempt += 1
        delivery.consumer = None
        delivery.not_before = 0.0
        self._ready.append(delivery)

    def _park(self, delivery: Delivery, reason: str) -> None:
        if delivery.replay:
            return  # still parked: the replay simply did not settle it
        self._to_park[delivery.record.position] = (delivery, reason)

    # -- the replicated part: parks, unparks and the checkpoint --------------------------

    def settled_up_to(self) -> int:
        """The checkpoint the group could record now, with its pending parks logged."""
        waiting = (*self._ready, *self._backoff, *self._in_flight.values())
        pending = [d.record.position for d in waiting if not d.replay]
        return min(pending, default=self._cursor) - 1

    async def flush(self, *, force: bool = False) -> None:
        """Log pending parks and unparks, and the checkpoint once a second (or when forced),
        in one entry; on failure everything stays pending for the next try."""
        now = self._clock()
        checkpoint = self.settled_up_to()
        due = force or now - self._last_checkpoint_at >= CHECKPOINT_EVERY_S
        move = due and checkpoint > self._checkpointed
        if not (self._to_park or self._to_unpark or move):
            return
        ops: list[LogOp] = []
        parks = dict(self._to_park)
        by_reason: dict[str, list[int]] = {}
        for position, (_, reason) in parks.items():
            by_reason.setdefault(reason, []).append(position)
        now_us = time.time_ns() // 1000
        name = self.definition.name
        ops += [ParkOp(self.store, name, sorted(p), r, now_us) for r, p in by_reason.items()]
        unparks = sorted(self._to_unpark)
        if unparks:
            ops.append(UnparkOp(self.store, name, unparks))
        if move:
            ops.append(CheckpointOp(self.store, self.definition.checkpoint_name, checkpoint))
        try:
            await self._log_ops(ops)
        except EsdbError as e:
            log.warning("%s/%s: could not log %d ops: %s", self.store, name, len(ops), e)
            return
        for position in parks:
            self._to_park.pop(position, None)
        self._to_unpark.difference_update(unparks)
        if move:
            self.checkpoint = self._checkpointed = checkpoint
            self._last_checkpoint_at = now

    # -- what subscription_info shows ----------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Deliveries awaiting an answer."""
        return len(self._in_flight)

    def consumers(self) -> list[ConsumerInfo]:
        """Consumers heard from, with their deliveries in flight."""
        now = self._clock()
        counts: dict[str, int] = {}
        for delivery in self._in_flight.values():
            if delivery.consumer is not None:
                counts[delivery.consumer] = counts.get(delivery.consumer, 0) + 1
        return [
            ConsumerInfo(
                consumer=name,
                in_flight=counts.get(name, 0),
                last_seen_ms=int((now - state.last_seen) * 1000),
            )
            for name, state in sorted(self._consumers.items())
        ]
