"""The emitter-cost benchmark runs every variant over every event it built, on a real
nats-server."""

from __future__ import annotations

from pathlib import Path

from esdb.benchmarks.emitter_cost import measure


async def test_every_variant_is_timed_over_every_event(tmp_path: Path) -> None:
    events, cost = await measure(tmp_path, entries=5, per_entry=4, repeats=1)
    assert events == 5 * 4
    assert set(cost) >= {"lmdb+eventout+publish", "log+frames+send-entry"}
    assert all(us > 0 for us in cost.values()), cost
