"""The filter-cost benchmark scans a real LMDB store, and its RE2 filter matches exactly what
Python's `re` matches for the same pattern."""

from __future__ import annotations

from pathlib import Path

import pytest

from esdb.benchmarks.filter_cost import measure


@pytest.mark.parametrize("stream_length", [1, 10])
async def test_the_regex_filters_agree_and_every_event_is_scanned(
    tmp_path: Path, stream_length: int
) -> None:
    costs = await measure(tmp_path, events=1_000, stream_length=stream_length)
    assert costs["no filter"].matched == 1_000
    streams = 1_000 // stream_length
    ending_in_7 = sum(1 for n in range(streams) if str(n).endswith("7"))
    assert costs["stream_regex (RE2)"].matched == ending_in_7 * stream_length
    assert costs["stream_regex (Python re)"].matched == ending_in_7 * stream_length
    assert 0 < costs["stream_prefix"].matched < 1_000
