"""The emitter's core: one leadership's fan-out of every store. It catches up from the
checkpoints through the node's LMDB, then publishes from the committed log itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from esdb.contracts.errors import EsdbError, NotFound
from esdb.contracts.log import (
    AppendOp,
    CheckpointOp,
    CreateStoreOp,
    LogOp,
    RemoveStoreOp,
    RestoreStreamOp,
    decode_entry,
)
from esdb.contracts.subjects import EMITTER_CHECKPOINT
from esdb.services.emitter.messages import StoreMessages
from esdb.shared.storage.catalog import OpenSystem, read_checkpoint, registered_stores
from esdb.shared.storage.port import StoreReader
from esdb.shared.tasks import cancel_and_wait
from esdb.shared.writer_ops import LogOps

log = logging.getLogger(__name__)

Send = Callable[[bytes], Awaitable[None]]
"""Queue publish frames (whole HPUB commands) on NATS."""
Tail = Callable[[int], AsyncGenerator[tuple[int, bytes], None]]
"""The committed log after a sequence, in order, then new entries as they commit."""

PAGE = 1000
"""Events read from LMDB at a time while catching up."""
CHECKPOINT_EVERY_S = 1.0


class FanoutError(Exception):
    """The log or a store does not continue what was emitted; the fan-out stops, never skips."""


@dataclass(eq=False)
class _Store:
    """How far one store's fan-out has built messages, handed them to NATS (`emitted`), and
    checkpointed."""

    name: str
    messages: StoreMessages
    emitted: int
    checkpointed: int
    built: int = 0

    def __post_init__(self) -> None:
        self.built = self.emitted


class LogFanout:
    """Publishes every store's events from its checkpoint on, once each in position order, and
    checkpoints what NATS has accepted. Runs once per leadership (and again after a failure).

    At start it takes the node's applied log sequence S, then reads each store from its
    checkpoint through LMDB, then follows the log from S + 1: every event applied by S is in
    LMDB, every later one in the log, and events at or below what a store has emitted are
    skipped, so the overlap costs nothing and nothing falls between."""

    def __init__(
        self,
        *,
        system: OpenSystem,
        stores: Callable[[str], StoreReader],
        tail: Tail,
        send: Send,
        flush: Callable[[], Awaitable[None]],
        log_ops: LogOps,
        max_payload: int,
    ) -> None:
        self._system = system
        self._open = stores
        self._tail = tail
        self._send = send
        self._flush = flush
        self._log_ops = log_ops
        self._max_payload = max_payload
        self._stores: dict[str, _Store] = {}
        self.sequence = 0
        """The last log entry handled."""

    @property
    def stores(self) -> list[str]:
        """The stores being fanned out."""
        return sorted(self._stores)

    async def run(self) -> None:
        """Emit until cancelled or until the log or a store shows a gap (`FanoutError`)."""
        self.sequence = self._start()
        emitting = asyncio.create_task(self._emit(), name="emitter fan-out")
        try:
            while True:
                done, _ = await asyncio.wait({emitting}, timeout=CHECKPOINT_EVERY_S)
                if done:
                    emitting.result()
                    raise FanoutError("the log tail ended")
                await self.save_checkpoints()
        finally:
            await cancel_and_wait(emitting)
            try:
                await asyncio.shield(self.save_checkpoints())
            except Exception as e:  # the fan-out's own error, if any, is the one to raise
                log.warning("final checkpoint not recorded: %s", e)

    def _start(self) -> int:
        """The node's applied sequence, then every store it has with its checkpoint."""
        with self._system() as system:
            if system is None:
                return 0
            applied = system.applied_sequence()  # first: the stores below are at least as new
            for name in registered_stores(system):
                checkpoint = read_checkpoint(system, name, EMITTER_CHECKPOINT)
                self._stores[name] = _Store(name, self._messages(name), checkpoint, checkpoint)
        return applied

    def _messages(self, store: str) -> StoreMessages:
        return StoreMessages(store, self._max_payload)

    async def _catch_up(self, state: _Store) -> None:
        """Publish what the node's LMDB holds of a store after its checkpoint."""
        while True:
            try:
                reader = self._open(state.name)
            except NotFound:
                return  # not made on this node yet, or removed since: the log goes on
            records, _ = reader.read_all(state.emitted + 1, backward=False, limit=PAGE)
            if not records:
                return
            expected = state.emitted + 1
            for record in records:
                if record.position != expected:
                    raise FanoutError(
                        f"{state.name}: position {record.position} follows {expected - 1}: a gap"
                    )
                expected += 1
            frames: list[bytes] = []
            state.messages.record_frames(records, frames)
            await self._send(b"".join(frames))
            state.emitted = state.built = records[-1].position

    async def _emit(self) -> None:
        for state in list(self._stores.values()):
            await self._catch_up(state)
        # Closed at once however this ends, so its consumer goes with it.
        async with contextlib.aclosing(self._tail(self.sequence)) as entries:
            async for sequence, raw in entries:
                await self.emit_entry(sequence, raw)

    async def emit_entry(self, sequence: int, raw: bytes) -> None:
        """Publish the events of log entry `sequence` (bytes `raw`) not published yet, as
        applying it would store them."""
        if sequence <= self.sequence:
            return
        if sequence != self.sequence + 1:
            raise FanoutError(f"log entry {sequence} follows {self.sequence}: a gap")
        try:
            entry = decode_entry(raw)
        except Exception as e:
            raise FanoutError(f"log entry {sequence} cannot be decoded: {e}") from e
        ops = entry.ops
        self._store_changes(ops)
        stores = self._stores
        frames: list[bytes] = []
        touched: list[_Store] = []
        for op in ops:
            if type(op) is not AppendOp and type(op) is not RestoreStreamOp:
                continue  # a restore stores events as an append does
            state = stores.get(op.store)
            if state is None:
                # Apply drops it too: the store is removed in this entry, or was removed after
                # this fan-out began (or was never made: the writers stop on such an entry).
                continue
            built = state.built
            first = op.first_position
            last = first + len(op.events) - 1
            if last <= built:
                continue  # read from LMDB while catching up
            if first > built + 1:
                raise FanoutError(f"{op.store}: position {first} follows {built}: a gap")
            skip = built + 1 - first
            events = op.events[skip:] if skip else op.events
            state.messages.append_frames(
                op.stream, op.first_version + skip, first + skip, events, frames
            )
            state.built = last
            touched.append(state)
        if frames:
            await self._send(b"".join(frames))
            for state in touched:
                state.emitted = state.built
        self.sequence = sequence

    def _store_changes(self, ops: list[LogOp]) -> None:
        """Stores an entry creates and removes, as apply treats them: creation first, and a
        store removed in the entry takes none of its ops."""
        created: list[str] = []
        removed: set[str] = set()
        for op in ops:
            if type(op) is CreateStoreOp:
                created.append(op.store)
            elif type(op) is RemoveStoreOp:
                removed.add(op.store)
        for name in created:
            if name not in self._stores:
                log.info("store %r was created; its fan-out starts", name)
                # checkpointed -1: record 0 soon, over any checkpoint a removed namesake left.
                self._stores[name] = _Store(name, self._messages(name), 0, -1)
        for name in removed:
            if self._stores.pop(name, None) is not None:
                log.info("store %r was removed; its fan-out stops", name)

    async def save_checkpoints(self) -> None:
        """Record each store's emitted position through the log, once NATS has everything
        before it."""
        moved = [(s, s.emitted) for s in self._stores.values() if s.emitted != s.checkpointed]
        if not moved:
            return
        await self._flush()
        ops: list[LogOp] = [CheckpointOp(s.name, EMITTER_CHECKPOINT, p) for s, p in moved]
        try:
            await self._log_ops(ops)
        except EsdbError as e:
            log.warning("emitter checkpoints not recorded: %s", e)
            return
        for state, position in moved:
            state.checkpointed = position
