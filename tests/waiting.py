"""Waiting on in-memory state with a deadline, for unit tests of async cores."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(check: Callable[[], bool], *, what: str, timeout: float = 5.0) -> None:
    """Let the event loop run until `check()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.001)


async def idle(turns: int = 50) -> None:
    """Let every ready task run a few times: what would happen at once has happened."""
    for _ in range(turns):
        await asyncio.sleep(0)
