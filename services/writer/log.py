"""The replicated log port: a JetStream stream in production, a list in unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from esdb.contracts.subjects import LOG_STREAM, LOG_SUBJECT

# JetStream's errors for a failed Nats-Expected-Last-Sequence / -Last-Msg-Id check.
WRONG_LAST_SEQUENCE = 10071
WRONG_LAST_MSG_ID = 10070
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
MSG_ID = "Nats-Msg-Id"
MAX_ENTRY_BYTES = 8 << 20


class FencedOut(Exception):
    """The log moved past the sequence this leader expected: another leader appended."""


class ReplicatedLog(Protocol):
    """An ordered, durable log whose sequence numbers are the log index."""

    async def append(
        self,
        entry: bytes,
        *,
        expected_last: int,
        entry_id: str | None = None,
        expected_last_id: str | None = None,
    ) -> int:
        """Append `entry` only if the log ends at `expected_last` (and, when given, with the
        entry named `expected_last_id`); its sequence, or FencedOut. `entry_id` names it."""
        ...

    async def last_sequence(self) -> int:
        """The sequence of the last entry (0 when empty)."""
        ...

    def entries(self, after: int) -> AsyncIterator[tuple[int, bytes]]:
        """Every entry after sequence `after`, in order, then new ones as they commit."""
        ...


class JetStreamLog:
    """The log as a JetStream stream; `Nats-Expected-Last-Sequence` fences stale leaders."""

    def __init__(self, js: JetStreamContext, *, publish_timeout: float = 5.0) -> None:
        self._js = js
        self._timeout = publish_timeout

    @staticmethod
    async def ensure(js: JetStreamContext, *, replicas: int, durability: str) -> None:
        """Create the log stream if it does not exist."""
        config = StreamConfig(
            name=LOG_STREAM,
            subjects=[LOG_SUBJECT],
            storage=StorageType.MEMORY if durability == "memory" else StorageType.FILE,
            num_replicas=replicas,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.NEW,
            max_msg_size=MAX_ENTRY_BYTES,
            allow_direct=True,
            duplicate_window=0,
        )
        try:
            await js.stream_info(LOG_STREAM)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)

    async def append(
        self,
        entry: bytes,
        *,
        expected_last: int,
        entry_id: str | None = None,
        expected_last_id: str | None = None,
    ) -> int:
        headers = {EXPECTED_LAST_SEQUENCE: str(expected_last)}
        if entry_id is not None:
            headers[MSG_ID] = entry_id
        if expected_last_id is not None:
            headers[EXPECTED_LAST_MSG_ID] = expected_last_id
        try:
            ack = await self._js.publish(
                LOG_SUBJECT, entry, timeout=self._timeout, stream=LOG_STREAM, headers=headers
            )
        except nats.js.errors.APIError as e:
            if e.err_code in (WRONG_LAST_SEQUENCE, WRONG_LAST_MSG_ID):
                raise FencedOut(f"log is past {expected_last} or ends with another entry") from e
            raise
        return int(ack.seq)

    async def last_sequence(self) -> int:
        info = await self._js.stream_info(LOG_STREAM)
        return int(info.state.last_seq)

    async def entries(self, after: int) -> AsyncIterator[tuple[int, bytes]]:
        sub = await self._js.subscribe(
            LOG_SUBJECT,
            stream=LOG_STREAM,
            ordered_consumer=True,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
            ),
        )
        try:
            async for msg in sub.messages:
                yield msg.metadata.sequence.stream, msg.data
        finally:
            await sub.unsubscribe()


class MemoryLog:
    """A log in a list, with the same fence, for unit tests of the core."""

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
        return len(self._entries)

    async def entries(self, after: int) -> AsyncIterator[tuple[int, bytes]]:
        sequence = after
        while True:
            async with self._grew:
                at = sequence
                await self._grew.wait_for(lambda: len(self._entries) > at)  # noqa: B023
            while sequence < len(self._entries):
                sequence += 1
                yield sequence, self._entries[sequence - 1]
