"""Entry point: `python -m esdb.services.writer`."""

from __future__ import annotations

import asyncio
import logging

from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore

from esdb.services.writer.applier import Applier
from esdb.services.writer.images import ImageKeeper, open_image_store, prepare_data_dir
from esdb.services.writer.lease import Lease
from esdb.services.writer.log import JetStreamLog
from esdb.services.writer.node import WriterNode
from esdb.services.writer.notices import AppliedNotices
from esdb.shared.membership import NodeRemoved, open_members, register
from esdb.shared.nats_connection import connect_service, retry_until_ready
from esdb.shared.service_runtime import EXIT_REFUSED, run_service
from esdb.shared.settings import Settings, advertised_host
from esdb.shared.storage.catalog import lmdb_catalog
from esdb.shared.telemetry import Telemetry

log = logging.getLogger(__name__)


async def join_members(js: JetStreamContext, settings: Settings) -> None:
    """Register this node in the cluster's members; NodeRemoved if it was removed."""
    kv = await open_members(js, replicas=settings.replicas, durability=settings.durability)
    await register(kv, settings.node_id, advertised_host(settings))


async def serve(settings: Settings, stop: asyncio.Event, telemetry: Telemetry) -> None:
    """Composition root of a writer node."""
    nc = await connect_service(settings, f"esdb-writer-{settings.node_id}")
    js = nc.jetstream(timeout=settings.timeout_ms / 1000)

    async def open_log_and_lease() -> tuple[JetStreamLog, Lease]:
        log_ = await JetStreamLog.open(
            js, replicas=settings.replicas, durability=settings.durability
        )
        # Lease calls time out well inside the TTL, so a cut-off leader notices in time.
        lease_js = nc.jetstream(timeout=settings.lease_ttl_s / 3)
        lease = await Lease.open(
            lease_js,
            settings.node_id,
            ttl=settings.lease_ttl_s,
            replicas=settings.replicas,
            durability=settings.durability,
        )
        return log_, lease

    # A JetStream cluster needs a few seconds to elect its meta leader after a start.
    log_, lease = await retry_until_ready(open_log_and_lease, what="JetStream", timeout=120)
    try:
        await retry_until_ready(lambda: join_members(js, settings), what="the members", timeout=120)
    except NodeRemoved as e:
        log.error("%s", e)
        await nc.close()
        raise SystemExit(EXIT_REFUSED) from e

    async def open_images() -> ObjectStore:
        images = await open_image_store(
            js, replicas=settings.replicas, durability=settings.durability
        )
        await prepare_data_dir(js, images, settings.data_dir)
        return images

    images = await retry_until_ready(open_images, what="the image store", timeout=120)
    catalog = lmdb_catalog(settings.data_dir, map_size=settings.lmdb_map_bytes)
    keeper = ImageKeeper(
        catalog,
        images,
        js,
        node=settings.node_id,
        every=settings.image_every_entries,
        retain=settings.log_retain_entries,
        purge=settings.log_purge,
    )
    try:
        notices = AppliedNotices(nc, settings.node_id, catalog.applied_sequence)
        await notices.start()
        applier = Applier(catalog, notices.announce)
        node = WriterNode(settings, nc, log_, applier, lease, keeper, telemetry)
        telemetry.ready_when(node.not_ready)
        await node.run(stop)
    finally:
        await nc.drain()
        catalog.close()


def main() -> None:
    """Run the writer until SIGINT/SIGTERM."""
    run_service("writer", serve)


if __name__ == "__main__":
    main()
