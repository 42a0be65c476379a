"""kill -9 the writer under concurrent appends: nothing acknowledged is lost or duplicated."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

from tests.stack import Stack, connect_api, wait_until
from tests.system.history import History, append_until_acked, verify

WORKERS = 16
APPENDS_PER_WORKER = 40


async def test_kill_writer_during_concurrent_appends(fresh_stack: Stack) -> None:
    api = await connect_api(fresh_stack.url)
    history = History()
    halfway = asyncio.Event()
    done = 0

    async def worker(n: int) -> None:
        nonlocal done
        stream = f"crash{n}-{uuid.uuid4().hex[:6]}"
        version: int | str = "no_stream"
        for i in range(APPENDS_PER_WORKER):
            version = await append_until_acked(api, history, stream, version, 1 + i % 3)
            done += 1
            if done >= WORKERS * APPENDS_PER_WORKER // 3:
                halfway.set()

    async def killer() -> None:
        await halfway.wait()
        victim = fresh_stack.pid("writer")
        os.kill(victim, signal.SIGKILL)

        async def restarted() -> bool:
            return fresh_stack.pid("writer") != victim

        await wait_until(restarted, timeout=30, what="the supervisor to restart the writer")

    await asyncio.gather(killer(), *(worker(n) for n in range(WORKERS)))
    assert len(history.acked) == WORKERS * APPENDS_PER_WORKER
    events = await verify(api, history)
    assert len(events) == sum(len(a.event_ids) for a in history.acked)
    assert "restarting" in fresh_stack.log_tail(400)
    await api.nc.close()
