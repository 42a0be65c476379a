"""Applies log entries in order to the node's stores, once each, from the tail or the leader."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from esdb.contracts.log import LogEntry, decode_entry
from esdb.services.writer.apply import ApplyError, apply_entry
from esdb.shared.storage.catalog import Catalog

# Every CHECKPOINT_EVERY-th sequence the running log hash is kept, so nodes at different
# sequences can still be compared at one they both passed.
CHECKPOINT_EVERY = 16
CHECKPOINTS_KEPT = 8


class Applier:
    """Serializes every apply on a node; an entry at or below the applied sequence is skipped."""

    def __init__(
        self, catalog: Catalog, on_applied: Callable[[int], Awaitable[None]] | None = None
    ) -> None:
        """`on_applied` is awaited with the applied sequence after each apply (the writer
        announces it to the node's other services)."""
        self.catalog = catalog
        self.lock = asyncio.Lock()
        self.applied = asyncio.Condition()
        self.checkpoints: dict[int, str] = {}
        self._on_applied = on_applied

    def apply_locked(self, sequence: int, entry: LogEntry, raw: bytes | None = None) -> None:
        """Apply `entry` as `sequence`; the caller holds `lock`."""
        applied = self.catalog.applied_sequence()
        if sequence <= applied:
            return
        if sequence != applied + 1:
            raise ApplyError(f"log entry {sequence} arrived after {applied}: a gap")
        apply_entry(self.catalog, sequence, entry, raw)
        if sequence % CHECKPOINT_EVERY == 0:
            self.checkpoints[sequence] = self.catalog.log_hash().hex()
            for old in sorted(self.checkpoints)[:-CHECKPOINTS_KEPT]:
                del self.checkpoints[old]

    async def apply_raw(self, sequence: int, data: bytes) -> None:
        """Decode and apply an entry from the log tail; a corrupt entry raises, never skips."""
        async with self.lock:
            if sequence <= self.catalog.applied_sequence():
                return
            try:
                entry = decode_entry(data)
            except Exception as e:
                raise ApplyError(f"log entry {sequence} cannot be decoded: {e}") from e
            self.apply_locked(sequence, entry, data)
        await self.notify()

    async def notify(self) -> None:
        """Wake whoever waits for the applied sequence to move, here and in other processes."""
        async with self.applied:
            self.applied.notify_all()
        if self._on_applied is not None:
            await self._on_applied(self.catalog.applied_sequence())

    async def wait_applied(self, sequence: int) -> None:
        """Return once `sequence` has been applied."""
        async with self.applied:
            await self.applied.wait_for(lambda: self.catalog.applied_sequence() >= sequence)
