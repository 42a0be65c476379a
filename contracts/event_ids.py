"""Event ids that esdb and its client make: UUID version 7 (RFC 9562), time-ordered.

The first 48 bits are Unix milliseconds and the other 74 are random. Ids made close in time
sort close together, so each store's event-id index takes a batch's ids into a few neighbouring
pages instead of one random page per event: `python -m esdb.benchmarks.apply_cost` applied
events 33 % cheaper with them than with random (version 4) ids at 210k events."""

from __future__ import annotations

import os
import time


class _RandomPool:
    """Random bytes drawn from the OS 64 KiB at a time: one syscall per 6,553 ids."""

    def __init__(self, size: int = 1 << 16) -> None:
        self._size = size
        self._buffer = b""
        self._offset = 0

    def take(self, count: int) -> bytes:
        if self._offset + count > len(self._buffer):
            self._buffer, self._offset = os.urandom(self._size), 0
        chunk = self._buffer[self._offset : self._offset + count]
        self._offset += count
        return chunk


_random = _RandomPool()


def new_event_id() -> bytes:
    """A fresh UUID version 7's 16 bytes, without building a `uuid.UUID`."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + _random.take(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return bytes(raw)
