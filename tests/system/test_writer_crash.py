"""kill -9 the writer under concurrent appends: nothing acknowledged is lost or duplicated."""

from __future__ import annotations

from tests.stack import Stack, connect_api
from tests.system.cluster import crash, load_with_fault
from tests.system.history import verify

WORKERS = 16
APPENDS_PER_WORKER = 40


async def test_kill_writer_during_concurrent_appends(fresh_stack: Stack) -> None:
    api = await connect_api(fresh_stack.url)

    async def fault() -> None:
        await crash(fresh_stack, "writer", 1)

    history = await load_with_fault(api, fault, workers=WORKERS, appends=APPENDS_PER_WORKER)
    assert len(history.acked) == WORKERS * APPENDS_PER_WORKER
    events = await verify(api, history)
    assert len(events) == sum(len(a.event_ids) for a in history.acked)
    assert "writer-node1 (pid" in fresh_stack.log_tail(400)
    await api.nc.close()
