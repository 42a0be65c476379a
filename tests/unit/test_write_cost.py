"""The write-cost benchmark validates, plans, applies and answers every append it builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from esdb.benchmarks.apply_cost import STORE
from esdb.benchmarks.write_cost import STAGES, measure, requests
from esdb.shared.storage.catalog import lmdb_catalog
from esdb.shared.wire import Codec


@pytest.mark.parametrize("codec", list(Codec))
async def test_every_built_append_is_written_at_its_expected_version(
    tmp_path: Path, codec: Codec
) -> None:
    cost = await measure(tmp_path, batches=6, batch=30, codec=codec)  # raises if one fails
    assert cost.events == 180
    assert all(cost.us_per_event(stage) > 0 for stage in STAGES)
    catalog = lmdb_catalog(tmp_path)
    try:
        assert catalog.get(STORE).last_position() == 180
    finally:
        catalog.close()


def test_requests_spread_over_the_writers_streams() -> None:
    built = requests(batches=2, batch=3, codec=Codec.JSON, writers=2)
    assert [len(b) for b in built] == [3, 3]
    assert b'"stream":"write-0-0"' in built[0][0]
    assert b'"expected_version":"no_stream"' in built[0][0]
    assert b'"expected_version":0' in built[0][2]  # writer 0's second append
