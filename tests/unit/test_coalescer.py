"""The gateway's write coalescer: batching, and answering at once when the leader changes."""

from __future__ import annotations

import asyncio

from esdb.contracts.commands import WriteOutcome, WriteRequest
from esdb.services.gateway.coalescer import WriteCoalescer
from tests.builders import append, write


class _SilentWriter:
    """A writer leader that never answers (it was killed mid-batch)."""

    def __init__(self) -> None:
        self.batches = 0

    async def ask(
        self, subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None
    ) -> bytes:
        self.batches += 1
        await asyncio.Event().wait()  # no reply, ever
        raise AssertionError("unreachable")


async def test_a_leader_change_answers_batches_in_flight_with_timeout() -> None:
    nc = _SilentWriter()
    coalescer = WriteCoalescer(nc.ask)
    outcomes: list[WriteOutcome] = []
    done = asyncio.Event()

    async def reply(outcome: WriteOutcome) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 3:
            done.set()

    requests: list[WriteRequest] = [write(append(f"s-{n}")) for n in range(3)]
    for request in requests:
        coalescer.submit(request, 60.0, reply)

    async def sent() -> None:
        while nc.batches == 0:
            await asyncio.sleep(0)

    await asyncio.wait_for(sent(), timeout=5)
    coalescer.leader_changed()
    await asyncio.wait_for(done.wait(), timeout=5)
    assert [o.error.code if o.error else None for o in outcomes] == ["timeout"] * 3
