"""A consumer of a persistent subscription: events in, acks and nacks out.

Deliveries arrive on the group's subject in queue group `<name>`, so every consumer of the
group gets a share. Each is answered at once with a receipt: taken, or handed back when this
consumer already holds `max_in_flight` unsettled events (the service then offers it to
another). Acks and nacks are buffered and sent in batches, so a consumer that settles every
event does not wait a round trip per event; `flush` waits for them, and `close` hands every
unsettled event back to the group without counting an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from esdb.client.connection import Connection
from esdb.client.events import RecordedEvent, event_from_json
from esdb.client.opening import ClosedOnExit, Opening
from esdb.contracts.errors import EsdbError
from esdb.contracts.subjects import Op, api_subject
from esdb.contracts.subscriptions import (
    ATTEMPT_HEADER,
    AckRequest,
    AckResult,
    NackRequest,
    Receipt,
    delivery_subject,
)

log = logging.getLogger(__name__)
NackAction = Literal["retry", "park", "skip", "stop"]
_ack_result = msgspec.msgpack.Decoder(AckResult)
_json = msgspec.json.Encoder()
# Settlements waiting longer than this, or more of them than this, go out as one request.
FLUSH_AFTER_S = 0.002
FLUSH_AT = 256


@dataclass(frozen=True, slots=True)
class PersistentEvent:
    """A delivered event and how many times the group has delivered it (1 the first time)."""

    event: RecordedEvent
    attempt: int

    @property
    def position(self) -> int:
        """The event's global position, which acks and nacks name."""
        return self.event.position


class PersistentSubscription(ClosedOnExit):
    """Events of one consumer group; `async for` them and `ack` or `nack` each."""

    def __init__(
        self, connection: Connection, store: str, name: str, consumer: str, max_in_flight: int
    ) -> None:
        self._connection = connection
        self.store = store
        self.name = name
        self.consumer = consumer
        self.max_in_flight = max_in_flight
        self._queue: asyncio.Queue[PersistentEvent | None] = asyncio.Queue()
        self._unsettled: set[int] = set()
        self._acks: list[int] = []
        self._nacks: dict[tuple[str, str], list[int]] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._sub: NatsSubscription | None = None
        self._closed = False

    async def start(self) -> None:
        """Join the group's queue group."""
        self._sub = await self._connection.nc.subscribe(
            delivery_subject(self.store, self.name), queue=self.name, cb=self._on_delivery
        )

    async def _on_delivery(self, msg: Msg) -> None:
        take = not self._closed and len(self._unsettled) < self.max_in_flight
        if msg.reply:
            receipt = Receipt(consumer=self.consumer, accepted=take)
            with contextlib.suppress(nats.errors.Error):
                await self._connection.nc.publish(msg.reply, _json.encode(receipt))
        if not take:
            return
        event = event_from_json(msg.data)
        attempt = int((msg.headers or {}).get(ATTEMPT_HEADER, "1"))
        self._unsettled.add(event.position)
        self._queue.put_nowait(PersistentEvent(event, attempt))

    def __aiter__(self) -> PersistentSubscription:
        return self

    async def __anext__(self) -> PersistentEvent:
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        return item

    def ack(self, *events: PersistentEvent | int) -> None:
        """Settle events (or positions): the group will not deliver them again."""
        for position in _positions(events):
            self._unsettled.discard(position)
            self._acks.append(position)
        self._schedule()

    def nack(
        self, *events: PersistentEvent | int, action: NackAction = "retry", reason: str = ""
    ) -> None:
        """Report failed events: `retry` them later (an attempt), `park` them for a replay,
        `skip` them, or `stop` (hand them back to the group uncounted)."""
        for position in _positions(events):
            self._unsettled.discard(position)
            self._nacks.setdefault((action, reason), []).append(position)
        self._schedule()

    def _schedule(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        try:
            while self._acks or self._nacks:  # settlements made while a batch was on its way
                if len(self._acks) < FLUSH_AT:
                    await asyncio.sleep(FLUSH_AFTER_S)
                await self._send()
        except EsdbError as e:
            log.warning(
                "%s: settlements not delivered (%s); the group redelivers them", self.name, e
            )

    async def flush(self) -> None:
        """Wait until every ack and nack so far has reached the group."""
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
        await self._send()

    async def _send(self) -> None:
        acks, self._acks = self._acks, []
        nacks, self._nacks = self._nacks, {}
        timeout_ms = self._connection.server_timeout_ms
        requests: list[tuple[str, Any]] = []
        if acks:
            requests.append(
                (
                    Op.ACK,
                    AckRequest(
                        subscription=self.name,
                        positions=acks,
                        consumer=self.consumer,
                        timeout_ms=timeout_ms,
                    ),
                )
            )
        for (action, reason), positions in nacks.items():
            body = NackRequest(
                subscription=self.name,
                positions=positions,
                action=action,
                reason=reason,
                consumer=self.consumer,
                timeout_ms=timeout_ms,
            )
            requests.append((Op.NACK, body))
        for op, body in requests:
            # Settling twice is harmless, so a lost reply may be retried.
            await self._connection.request(
                api_subject(self.store, op), body, _ack_result, idempotent=True
            )

    async def close(self) -> None:
        """Leave the group: unsettled events go back to it; buffered settlements are sent."""
        if self._closed:
            return
        self._closed = True
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
        if self._unsettled:
            self.nack(*sorted(self._unsettled), action="stop")
        with contextlib.suppress(EsdbError):
            await self.flush()
        self._queue.put_nowait(None)


class Consuming(Opening[PersistentSubscription]):
    """A consumer joining its group: await it, or use it with `async with`."""

    def __init__(
        self,
        connection: Connection,
        store: str,
        name: str,
        consumer: str | None,
        max_in_flight: int,
    ) -> None:
        self._args = (connection, store, name, consumer or uuid.uuid4().hex[:12], max_in_flight)

    async def _open(self) -> PersistentSubscription:
        subscription = PersistentSubscription(*self._args)
        await subscription.start()
        return subscription


def _positions(events: tuple[PersistentEvent | int, ...]) -> list[int]:
    return [e if isinstance(e, int) else e.position for e in events]
