"""Node-local services that run only beside the writer leader poll its lease."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient

from esdb.contracts.api import NodeStatus
from esdb.contracts.subjects import LEASE_BUCKET, LEASE_KEY, NODE_STATUS, lease_holder
from esdb.shared.nats_connection import gather_replies, retry_until_ready

LEADER_POLL_S = 0.25


async def leading_ticks(
    nc: NatsClient, node_id: str, stop: asyncio.Event, poll_s: float = LEADER_POLL_S
) -> AsyncIterator[bool]:
    """Every `poll_s` until `stop`: whether this node's writer holds the lease."""
    js = nc.jetstream(timeout=2)
    kv = await retry_until_ready(
        lambda: js.key_value(LEASE_BUCKET), what="the lease bucket", timeout=300
    )
    while not stop.is_set():
        try:
            entry = await kv.get(LEASE_KEY)
            leading = lease_holder(entry.value) == node_id
        except (nats.js.errors.KeyNotFoundError, nats.errors.Error):
            leading = False
        yield leading
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_s)


_status = msgspec.msgpack.Decoder(NodeStatus)


async def writer_leads(nc: NatsClient, node_id: str, window: float = 0.3) -> bool:
    """Whether this node's writer serves as the leader: it holds the lease *and* has applied
    the whole log, so the node's stores show everything committed before."""
    for reply in await gather_replies(nc, NODE_STATUS, b"", window):
        status = _status.decode(reply)
        if status.node_id == node_id:
            return status.role == "leader"
    return False
