"""A node preparing its data directory against a real JetStream log and image bucket: a gap
no image covers is asked about again before it is an error, so an image that lands meanwhile
(the leader takes one and purges the log under it) is restored instead."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore

from esdb.contracts.log import CreateStoreOp, LogEntry, encode_entry
from esdb.services.writer.applier import Applier
from esdb.services.writer.images import (
    ImageError,
    latest_image,
    open_image_store,
    prepare_data_dir,
    purge_log_below,
    take_image,
)
from esdb.services.writer.log import JetStreamLog
from esdb.shared.storage.catalog import Catalog, applied_on_disk, lmdb_catalog
from tests.integration.conftest import NatsServer
from tests.stack import wait_until

ENTRIES = 12


@pytest.fixture
async def log_and_images(
    jetstream_server: NatsServer,
) -> AsyncIterator[tuple[JetStreamContext, ObjectStore]]:
    """A log of `ENTRIES` entries (the first creates a store) and an empty image bucket."""
    nc = await nats.connect(jetstream_server.url)
    js = nc.jetstream()
    log = await JetStreamLog.open(js, replicas=1, durability="fsync")
    for sequence in range(ENTRIES):
        ops = [CreateStoreOp(store=f"s{sequence}")]
        await log.append(encode_entry(LogEntry(ops=list(ops))), expected_last=sequence)
    images = await open_image_store(js, replicas=1, durability="fsync")
    try:
        yield js, images
    finally:
        await nc.close()


async def _node_at(js: JetStreamContext, work: Path, upto: int) -> Catalog:
    """A node of its own that applied the log's first `upto` entries."""
    catalog = lmdb_catalog(work)
    applier = Applier(catalog)
    log = await JetStreamLog.open(js, replicas=1, durability="fsync")
    entries = log.entries(0)
    async for sequence, data in entries:
        await applier.apply_raw(sequence, data)
        if sequence == upto:
            break
    await entries.aclose()  # type: ignore[attr-defined]
    return catalog


async def test_a_gap_no_image_covers_is_an_error_after_the_settle_window(
    log_and_images: tuple[JetStreamContext, ObjectStore], tmp_path: Path
) -> None:
    js, images = log_and_images
    await purge_log_below(js, 9)
    with pytest.raises(ImageError, match="no image covers the gap"):
        await prepare_data_dir(js, images, tmp_path / "fresh", settle_s=1.0)
    assert applied_on_disk(tmp_path / "fresh") == 0


async def test_an_image_that_lands_while_it_asks_again_is_restored(
    log_and_images: tuple[JetStreamContext, ObjectStore],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    js, images = log_and_images
    leader = await _node_at(js, tmp_path / "leader", upto=10)
    await purge_log_below(js, 9)  # as if the leader's image came first and the purge after it
    caplog.set_level(logging.WARNING, logger="esdb.services.writer.images")
    joining = asyncio.create_task(prepare_data_dir(js, images, tmp_path / "joining", settle_s=30.0))

    async def asked_again() -> bool:
        return "asking again" in caplog.text

    await wait_until(asked_again, timeout=10, what="the joining node to find the gap")
    assert not joining.done()
    try:
        await take_image(leader, images, "leader")
    finally:
        leader.close()
    await asyncio.wait_for(joining, 30)
    image = await latest_image(images)
    assert image is not None and image.sequence == 10
    assert applied_on_disk(tmp_path / "joining") == 10
