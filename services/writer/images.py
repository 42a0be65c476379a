"""LMDB images: a consistent copy of a node's stores kept in a JetStream object store, so a
new or wiped node starts from it instead of the whole log, and old log entries can be purged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectStoreConfig, StorageType
from nats.js.object_store import ObjectStore

from esdb.contracts.subjects import IMAGE_BUCKET, IMAGE_NAME, LOG_STREAM
from esdb.shared.storage.catalog import (
    SYSTEM_STORE_DIR,
    Catalog,
    applied_on_disk,
    registered_stores,
)
from esdb.shared.storage.lmdb_store import LmdbStore

GAP_SETTLE_S = 10.0
"""How long a node asks again about a gap between its data and the log before it gives up."""
GAP_RETRY_S = 0.5
DOWNLOAD_STALL_S = 30.0
"""An image download that writes nothing for this long is given up and tried again."""

log = logging.getLogger(__name__)


class ImageInfo(msgspec.Struct, frozen=True):
    """What an image holds: every store as of log `sequence`, taken on `node`."""

    sequence: int
    node: str


class ImageError(Exception):
    """No image can bring this node to where the log starts."""


async def open_image_store(js: JetStreamContext, *, replicas: int, durability: str) -> ObjectStore:
    """Create or bind the object store bucket that holds images."""
    try:
        return await js.object_store(IMAGE_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        storage = StorageType.MEMORY if durability == "memory" else StorageType.FILE
        return await js.create_object_store(
            IMAGE_BUCKET, config=ObjectStoreConfig(replicas=replicas, storage=storage)
        )


async def latest_image(images: ObjectStore) -> ImageInfo | None:
    """The newest image's info, if one was ever taken."""
    try:
        info = await images.get_info(IMAGE_NAME)
    except nats.js.errors.ObjectNotFoundError:
        return None
    if info.deleted or not info.description:
        return None
    return msgspec.json.decode(info.description, type=ImageInfo)


def _copy_catalog(catalog: Catalog, into: Path) -> int:
    """Copy every store (the system store first) and return the sequence the copy reflects.

    Stores copied after the system store may be ahead of it; that is safe, since a store skips
    entries it already applied when the log tail is replayed onto the image."""
    system = catalog.system
    assert isinstance(system, LmdbStore)
    system.copy_to(into / SYSTEM_STORE_DIR)
    copied = LmdbStore(into / SYSTEM_STORE_DIR, readonly=True)
    try:
        reflected = copied.applied_sequence()
        names = registered_stores(copied)
    finally:
        copied.close()
    for name in names:
        store = catalog.get(name)
        assert isinstance(store, LmdbStore)
        store.copy_to(into / name)
    return reflected


def _pack(source: Path, archive: Path) -> None:
    with tarfile.open(archive, "w") as tar:
        for child in sorted(source.iterdir()):
            tar.add(child, arcname=child.name)


async def take_image(catalog: Catalog, images: ObjectStore, node: str) -> ImageInfo:
    """Copy the node's stores (without stopping applies) and upload them as the latest image."""
    with tempfile.TemporaryDirectory(prefix="esdb-image-") as work:
        copy_dir, archive = Path(work) / "stores", Path(work) / "image.tar"
        copy_dir.mkdir()
        sequence = await asyncio.to_thread(_copy_catalog, catalog, copy_dir)
        await asyncio.to_thread(_pack, copy_dir, archive)
        image = ImageInfo(sequence=sequence, node=node)
        meta = ObjectMeta(name=IMAGE_NAME, description=msgspec.json.encode(image).decode())
        with open(archive, "rb") as data:
            await images.put(IMAGE_NAME, data, meta=meta)  # type: ignore[arg-type]
    log.info("took image at log sequence %d", sequence)
    return image


async def _download(images: ObjectStore, out: BinaryIO) -> None:
    """Fetch the image into `out`; TimeoutError (the caller retries) if it stops growing for
    `DOWNLOAD_STALL_S`: a chaos run saw nats-py's object store read hang mid-image, for good,
    and the joining node never became ready."""
    fetching = asyncio.ensure_future(images.get(IMAGE_NAME, writeinto=out))  # type: ignore[arg-type]
    written = -1
    while True:
        done, _ = await asyncio.wait({fetching}, timeout=DOWNLOAD_STALL_S)
        if done:
            fetching.result()
            return
        if out.tell() == written:
            fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetching
            raise TimeoutError(f"the image download stalled at {written} bytes")
        written = out.tell()


async def restore_image(images: ObjectStore, data_dir: Path) -> ImageInfo:
    """Replace `data_dir` with the latest image; the caller then replays the log after it."""
    image = await latest_image(images)
    if image is None:
        raise ImageError("no image exists")
    staging = data_dir.with_name(data_dir.name + ".restoring")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    archive = staging / "image.tar"
    with open(archive, "wb") as out:
        await _download(images, out)
    with tarfile.open(archive) as tar:
        tar.extractall(staging / "stores", filter="data")
    shutil.rmtree(data_dir, ignore_errors=True)
    (staging / "stores").rename(data_dir)
    shutil.rmtree(staging, ignore_errors=True)
    log.warning("restored image of log sequence %d into %s", image.sequence, data_dir)
    return image


async def prepare_data_dir(
    js: JetStreamContext, images: ObjectStore, data_dir: Path, *, settle_s: float = GAP_SETTLE_S
) -> None:
    """Restore the latest image into a new, wiped or hopelessly behind node, so that the log
    still holds every entry after what its data directory reflects.

    A gap no image covers is asked about again for `settle_s` before it is an error: the log's
    bounds and the image are two reads of a cluster that keeps taking images and purging."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle_s
    while True:
        first, _ = await log_bounds(js)
        applied = applied_on_disk(data_dir)
        image = await latest_image(images)
        fresh_and_image = applied == 0 and image is not None and image.sequence > 0
        if applied + 1 >= first and not fresh_and_image:
            return
        if image is not None and image.sequence + 1 >= first:
            await restore_image(images, data_dir)
            return
        problem = (
            f"{data_dir} reflects log sequence {applied} but the log starts at {first}, and "
            f"no image covers the gap (latest image: {image})"
        )
        if loop.time() > deadline:
            raise ImageError(problem)
        log.warning("%s; asking again", problem)
        await asyncio.sleep(GAP_RETRY_S)


async def log_bounds(js: JetStreamContext) -> tuple[int, int]:
    """The first and last sequence still in the log."""
    info = await js.stream_info(LOG_STREAM)
    return int(info.state.first_seq), int(info.state.last_seq)


async def purge_log_below(js: JetStreamContext, sequence: int) -> None:
    """Drop log entries before `sequence` (our log compaction)."""
    if sequence > 1:
        try:
            await js.purge_stream(LOG_STREAM, seq=sequence)
        except nats.errors.Error as e:
            log.warning("log purge below %d failed: %s", sequence, e)


class ImageKeeper:
    """Run by the leader: take an image every `every` entries, then purge the log below it
    (keeping `retain` entries so followers a little behind never need the image)."""

    def __init__(
        self,
        catalog: Catalog,
        images: ObjectStore,
        js: JetStreamContext,
        *,
        node: str,
        every: int,
        retain: int,
        purge: bool,
    ) -> None:
        self._catalog = catalog
        self._images = images
        self._js = js
        self._node = node
        self._every = every
        self._retain = retain
        self._purge = purge

    async def run(self, poll_s: float = 1.0) -> None:
        """Check the applied sequence every `poll_s` until cancelled."""
        latest = await latest_image(self._images)
        imaged = latest.sequence if latest else 0
        while True:
            if self._catalog.applied_sequence() - imaged >= self._every:
                try:
                    image = await take_image(self._catalog, self._images, self._node)
                except (nats.errors.Error, OSError) as e:
                    log.warning("taking an image failed: %s", e)
                else:
                    imaged = image.sequence
                    if self._purge:
                        await purge_log_below(self._js, image.sequence - self._retain + 1)
            await asyncio.sleep(poll_s)
