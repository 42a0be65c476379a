"""`esdb bench --scenario persistent` end to end against the session's stack: a short run, no
timing thresholds; every acknowledged append is delivered on both sides, and nothing is left
behind."""

from __future__ import annotations

import msgspec
import nats
import nats.js.errors
import pytest

from esdb.benchmarks.appends import JETSTREAM_STREAM
from esdb.benchmarks.cli import BenchOptions, bench
from esdb.benchmarks.persistent import ESDB_GROUP, JETSTREAM_DURABLE
from esdb.benchmarks.report import format_report
from esdb.client import Client
from tests.stack import Stack

APPENDS = 300


async def test_persistent_scenario_delivers_every_append_on_both_sides(stack: Stack) -> None:
    options = BenchOptions(
        events=APPENDS,
        clients=4,
        durability="fsync",
        url=stack.url,
        data_dir=stack.data_dir,
        store="default",
        stream_length=50,
        event_bytes=160,
        read_page=1000,
        scenario="persistent",
        timeout=30.0,
        json=False,
        live_events=APPENDS,
        duration=2.0,
        probe_events=40,
        consumers=2,
        max_in_flight=20,
    )
    report = await bench(options)

    persistent = report.persistent
    assert persistent is not None
    assert persistent.rate_from == "probe" and persistent.probe is not None
    assert [side.path for side in persistent.sides] == [ESDB_GROUP, JETSTREAM_DURABLE]
    for side in persistent.sides:
        assert (side.planned, side.appended, side.errors) == (APPENDS, APPENDS, 0), side.path
        assert (side.delivered, side.missing, side.foreign) == (APPENDS, 0, 0), side.path
        assert side.deliveries == side.delivered + side.duplicates, side.path
        assert side.latencies[0].count == APPENDS, side.path
        assert side.lag.failed_samples == 0, side.path
    assert report.config.events == APPENDS

    text = format_report(report)
    assert "esdb / jetstream: deliveries/s" in text
    assert msgspec.json.decode(msgspec.json.encode(report))["persistent"]["consumers"] == 2

    # The run cleans up after itself: no group, no durable consumer left behind.
    name = persistent.name
    async with Client.connect(stack.url) as client:
        assert name not in {info.subscription for info in await client.list_subscriptions()}
    nc = await nats.connect(stack.url)
    try:
        with pytest.raises(nats.js.errors.NotFoundError):
            await nc.jetstream().consumer_info(JETSTREAM_STREAM, name)
    finally:
        await nc.close()
