"""Waking every task that waits for newly applied log entries."""

from __future__ import annotations

import asyncio


class Wakeup:
    """Broadcast "new entries applied" to every waiting fan-out."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event:
        """The event the next `notify` sets; take it before looking for new entries."""
        return self._event

    def notify(self) -> None:
        """Wake everyone holding a ticket."""
        self._event.set()
        self._event = asyncio.Event()
