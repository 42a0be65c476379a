"""The apply-cost benchmark applies every event it builds, in order, into a real LMDB store."""

from __future__ import annotations

from pathlib import Path

from esdb.benchmarks.apply_cost import measure


async def test_every_built_event_is_applied(tmp_path: Path) -> None:
    cost = await measure(tmp_path, entries=7, per_entry=30)
    assert cost.entries == 7
    assert cost.events == 7 * 30  # the store's last position: dense, nothing skipped
    assert cost.cpu_us_per_event > 0
