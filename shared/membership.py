"""The cluster's members: a JetStream KV bucket of node id → host and state, which each writer
registers in at start and `esdb cluster remove` marks removed, so a removed node's data
directory cannot rejoin silently."""

from __future__ import annotations

import time

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from esdb.contracts.subjects import MEMBERS_BUCKET

MEMBER = "member"
REMOVED = "removed"


class Member(msgspec.Struct, kw_only=True, frozen=True):
    """One node as the cluster knows it."""

    node_id: str
    host: str
    state: str = MEMBER
    since: float = 0.0
    """When it joined, or when it was removed (Unix time)."""


class NodeRemoved(Exception):
    """This node id was removed from the cluster for good."""


_decoder = msgspec.json.Decoder(Member)


async def open_members(js: JetStreamContext, *, replicas: int, durability: str) -> KeyValue:
    """Create or bind the members bucket."""
    try:
        return await js.key_value(MEMBERS_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        storage = StorageType.MEMORY if durability == "memory" else StorageType.FILE
        return await js.create_key_value(
            KeyValueConfig(bucket=MEMBERS_BUCKET, history=1, replicas=replicas, storage=storage)
        )


async def member(kv: KeyValue, node_id: str) -> Member | None:
    """What the cluster knows of `node_id`, if anything."""
    try:
        entry = await kv.get(node_id)
    except nats.js.errors.KeyNotFoundError:
        return None
    return _decoder.decode(entry.value) if entry.value else None


async def register(kv: KeyValue, node_id: str, host: str) -> Member:
    """Record `node_id` at `host` as a member; raises NodeRemoved if it was removed."""
    known = await member(kv, node_id)
    if known is not None and known.state == REMOVED:
        raise NodeRemoved(
            f"node {node_id!r} was removed from the cluster "
            f"({time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(known.since))}) and cannot "
            "rejoin with its old identity. To bring this host back, empty its data directory "
            "and start it with a node id the cluster has never used (--node-id)."
        )
    since = known.since if known is not None and known.host == host else time.time()
    record = Member(node_id=node_id, host=host, since=since)
    if record != known:
        await kv.put(node_id, msgspec.json.encode(record))
    return record


async def mark_removed(kv: KeyValue, node_id: str, host: str) -> Member:
    """Record that `node_id` left the cluster for good."""
    record = Member(node_id=node_id, host=host, state=REMOVED, since=time.time())
    await kv.put(node_id, msgspec.json.encode(record))
    return record


async def all_members(kv: KeyValue) -> list[Member]:
    """Every node the cluster has known, by node id."""
    try:
        keys = await kv.keys()
    except nats.js.errors.NoKeysError:
        return []
    found = [m for key in sorted(keys) if (m := await member(kv, key)) is not None]
    return found
