"""Leader election: a key in a JetStream KV bucket with a TTL, renewed by compare-and-set."""

from __future__ import annotations

import contextlib
import uuid

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from esdb.contracts.subjects import LEASE_BUCKET, LEASE_KEY, lease_holder, lease_value


class Lease:
    """The writer-leader lease: whoever holds the key sequences the log until it expires."""

    def __init__(self, kv: KeyValue, node_id: str) -> None:
        self._kv = kv
        self._node_id = node_id
        # A new value per process: a restarted writer that takes its node's lease back still
        # changes it, which tells gateways that batches sent to the old process are lost.
        self._value = lease_value(node_id, uuid.uuid4().hex[:12])
        self._revision: int | None = None
        self.holder_seen: str | None = None

    @classmethod
    async def open(
        cls, js: JetStreamContext, node_id: str, *, ttl: float, replicas: int, durability: str
    ) -> Lease:
        """Create or bind the lease bucket."""
        try:
            kv = await js.key_value(LEASE_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=LEASE_BUCKET,
                    ttl=ttl,
                    history=1,
                    replicas=replicas,
                    storage=StorageType.MEMORY if durability == "memory" else StorageType.FILE,
                )
            )
        return cls(kv, node_id)

    async def try_acquire(self) -> bool:
        """Take the lease if it is free (or already ours from before a restart)."""
        try:
            self._revision = await self._kv.create(LEASE_KEY, self._value)
            self.holder_seen = self._node_id
            return True
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        try:
            entry = await self._kv.get(LEASE_KEY)
        except nats.js.errors.KeyNotFoundError:
            self.holder_seen = None
            return False
        self.holder_seen = lease_holder(entry.value)
        if self.holder_seen != self._node_id or entry.revision is None:
            return False
        return await self._update(entry.revision)

    async def renew(self) -> bool:
        """Extend the lease; False if it was lost (expired and taken, or changed)."""
        if self._revision is None:
            return False
        return await self._update(self._revision)

    async def _update(self, revision: int) -> bool:
        try:
            self._revision = await self._kv.update(LEASE_KEY, self._value, last=revision)
            self.holder_seen = self._node_id
            return True
        except nats.errors.Error:
            # Taken by another node, or NATS unreachable: either way we cannot prove we
            # still hold it, so we stop sequencing (the log fence would stop us anyway).
            self._revision = None
            return False

    async def release(self) -> None:
        """Give the lease up so another node can take it at once."""
        if self._revision is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._kv.delete(LEASE_KEY, last=self._revision)
            self._revision = None

    async def holder(self) -> str | None:
        """The node that holds the lease, if any."""
        try:
            entry = await self._kv.get(LEASE_KEY)
        except nats.js.errors.KeyNotFoundError:
            return None
        return lease_holder(entry.value)
