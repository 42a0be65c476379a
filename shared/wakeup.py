"""Waking every task that waits for something to change (log entries applied, a new leader)."""

from __future__ import annotations

import asyncio


class Wakeup:
    """Broadcast "something changed" to every task holding a ticket."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event:
        """The event the next `notify` sets; take it before looking, so no change is missed."""
        return self._event

    def notify(self) -> None:
        """Wake everyone holding a ticket."""
        self._event.set()
        self._event = asyncio.Event()


async def wait_any(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Return once any of `events` is set, or after `timeout` seconds."""
    if any(event.is_set() for event in events):
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
