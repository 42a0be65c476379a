"""The replicated log port: a JetStream stream in production, a list in unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)

from esdb.contracts.subjects import LOG_STREAM, LOG_SUBJECT

# JetStream's errors for a failed Nats-Expected-Last-Sequence / -Last-Msg-Id check.
WRONG_LAST_SEQUENCE = 10071
WRONG_LAST_MSG_ID = 10070
# JetStream's error for an entry over the stream's maximum message size.
ENTRY_EXCEEDS_MAXIMUM = 10054
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
MSG_ID = "Nats-Msg-Id"
MAX_ENTRY_BYTES = 8 << 20
"""The largest log message, headers (under 1 KiB) included."""
TAIL_HEARTBEAT_S = 0.5
"""How often an idle log tail hears from its consumer's server."""
TAIL_QUEUE_ENTRIES = 64
"""Entries a log tail holds received and not yet taken."""


class FencedOut(Exception):
    """The log moved past the sequence this leader expected: another leader appended."""


class EntryTooLarge(Exception):
    """The entry is over `MAX_ENTRY_BYTES`; nothing was written."""


class ReplicatedLog(Protocol):
    """An ordered, durable log whose sequence numbers are the log index."""

    @property
    def checks_id_on_accept(self) -> bool:
        """Whether a wrong `expected_last_id` is refused on accept and the log goes on: only
        then may a leader pipeline entries fenced on their predecessor's id."""
        ...

    async def append(
        self,
        entry: bytes,
        *,
        expected_last: int,
        entry_id: str | None = None,
        expected_last_id: str | None = None,
    ) -> int:
        """Append `entry` only if the log ends at `expected_last` (and, when given, with the
        entry named `expected_last_id`); its sequence, FencedOut, or EntryTooLarge. `entry_id`
        names it."""
        ...

    async def last_sequence(self) -> int:
        """The sequence of the last entry (0 when empty)."""
        ...

    def entries(self, after: int) -> AsyncIterator[tuple[int, bytes]]:
        """Every entry after sequence `after`, in order, then new ones as they commit."""
        ...


class JetStreamLog:
    """The log as a JetStream stream; `Nats-Expected-Last-Sequence` fences stale leaders."""

    def __init__(
        self, js: JetStreamContext, stream: StreamInfo, *, publish_timeout: float = 5.0
    ) -> None:
        self._js = js
        self._timeout = publish_timeout
        self._stream = stream.config.name or LOG_STREAM
        self._subject = (stream.config.subjects or [LOG_SUBJECT])[0]
        self._learn(stream)

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        *,
        replicas: int,
        durability: str,
        stream: str = LOG_STREAM,
        subject: str = LOG_SUBJECT,
    ) -> JetStreamLog:
        """Create the log stream if it does not exist and bind to it as it is."""
        try:
            info = await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            info = await js.add_stream(
                StreamConfig(
                    name=stream,
                    subjects=[subject],
                    storage=StorageType.MEMORY if durability == "memory" else StorageType.FILE,
                    num_replicas=replicas,
                    retention=RetentionPolicy.LIMITS,
                    discard=DiscardPolicy.NEW,
                    max_msg_size=MAX_ENTRY_BYTES,
                    allow_direct=True,
                    duplicate_window=0,
                )
            )
        return cls(js, info)

    @property
    def stream(self) -> str:
        """The name of the log's stream."""
        return self._stream

    def _learn(self, info: StreamInfo) -> None:
        # The stream may have been created (or rescaled) with another count than asked for.
        self._replicas = info.config.num_replicas or 1

    @property
    def checks_id_on_accept(self) -> bool:
        """Only with one replica: a replicated stream checks the id when it applies the entry,
        and a mismatch stops it. As of the replica count last read (open, `last_sequence`)."""
        return self._replicas == 1

    async def append(
        self,
        entry: bytes,
        *,
        expected_last: int,
        entry_id: str | None = None,
        expected_last_id: str | None = None,
    ) -> int:
        """Publish `entry` with the fence headers; its sequence, FencedOut, or EntryTooLarge."""
        headers = {EXPECTED_LAST_SEQUENCE: str(expected_last)}
        if entry_id is not None:
            headers[MSG_ID] = entry_id
        if expected_last_id is not None:
            headers[EXPECTED_LAST_MSG_ID] = expected_last_id
        try:
            ack = await self._js.publish(
                self._subject,
                entry,
                timeout=self._timeout,
                stream=self._stream,
                headers=headers,
            )
        except nats.errors.MaxPayloadError as e:
            raise EntryTooLarge(f"entry of {len(entry)} bytes is over the server's limit") from e
        except nats.js.errors.APIError as e:
            if e.err_code in (WRONG_LAST_SEQUENCE, WRONG_LAST_MSG_ID):
                raise FencedOut(f"log is past {expected_last} or ends with another entry") from e
            if e.err_code == ENTRY_EXCEEDS_MAXIMUM:
                raise EntryTooLarge(f"entry of {len(entry)} bytes is over the limit") from e
            raise
        return int(ack.seq)

    async def last_sequence(self) -> int:
        """The stream's last sequence (0 when empty)."""
        info = await self._js.stream_info(self._stream)
        self._learn(info)
        return int(info.state.last_seq)

    async def entries(self, after: int) -> AsyncIterator[tuple[int, bytes]]:
        """Every entry after `after` through an ordered consumer, then new ones as they come."""
        # A callback into a queue of our own, not `sub.messages`: nats-py's iterator makes a
        # task and an `asyncio.wait` per message (receiving an entry: 21 against 37-46 us).
        # Bounded, so a slow apply leaves the backlog in nats-py's pending limits as before.
        received: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(TAIL_QUEUE_ENTRIES)

        async def take(msg: Msg) -> None:
            await received.put((msg.metadata.sequence.stream, msg.data))

        sub = await self._js.subscribe(
            self._subject,
            stream=self._stream,
            ordered_consumer=True,
            # The consumer lives on one server; when that server's host dies the client only
            # notices by missed heartbeats (two). At nats-py's default 5 s a new leader waited
            # 5-15 s to catch up after a whole-host kill; at this, about a second.
            idle_heartbeat=TAIL_HEARTBEAT_S,
            cb=take,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
            ),
        )
        try:
            while True:
                yield await received.get()
        finally:
            await sub.unsubscribe()


class MemoryLog:
    """A log in a list, with the same fences, for unit tests of the core."""

    checks_id_on_accept = True
    """Like a one-server stream: a wrong `expected_last_id` is refused at once."""

    def __init__(self) -> None:
        self._entries: list[bytes] = []
        self._ids: list[str | None] = []
        self._grew = asyncio.Condition()

    async def append(
        self,
        entry: bytes,
        *,
        expected_last: int,
        entry_id: str | None = None,
        expected_last_id: str | None = None,
    ) -> int:
        """Append `entry` if the fences hold; its sequence, FencedOut, or EntryTooLarge."""
        if len(entry) > MAX_ENTRY_BYTES:
            raise EntryTooLarge(f"entry of {len(entry)} bytes is over {MAX_ENTRY_BYTES}")
        if expected_last != len(self._entries):
            raise FencedOut(f"log is at {len(self._entries)}, not {expected_last}")
        if expected_last_id is not None and (not self._ids or self._ids[-1] != expected_last_id):
            raise FencedOut(f"log ends with {self._ids[-1] if self._ids else None}")
        async with self._grew:
            self._entries.append(entry)
            self._ids.append(entry_id)
            self._grew.notify_all()
        return len(self._entries)

    async def last_sequence(self) -> int:
        """How many entries the list holds."""
        return len(self._entries)

    async def entries(self, after: int) -> AsyncIterator[tuple[int, bytes]]:
        """Every entry after `after`, then new ones as they are appended."""
        sequence = after
        while True:
            async with self._grew:
                at = sequence
                await self._grew.wait_for(lambda: len(self._entries) > at)  # noqa: B023
            while sequence < len(self._entries):
                sequence += 1
                yield sequence, self._entries[sequence - 1]
