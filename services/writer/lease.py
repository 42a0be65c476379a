"""Leader election: one key with a TTL, renewed by compare-and-set. The key is a port: a key in a
JetStream KV bucket in production, a value and a clock in unit tests."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from esdb.contracts.subjects import LEASE_BUCKET, LEASE_KEY, lease_holder, lease_value
from esdb.services.writer.log import WRONG_LAST_SEQUENCE


class KeyChanged(Exception):
    """The lease key is not in the state a write expected: it exists (create), or its
    revision moved on (update, delete)."""


class LeaseKey(Protocol):
    """One key with a TTL, written by compare-and-set: what a `Lease` is kept in. A backend
    that cannot be reached raises `nats.errors.Error`."""

    async def create(self, value: bytes) -> int:
        """Write `value` if the key is absent (never set, deleted, or expired); its revision,
        or KeyChanged."""
        ...

    async def update(self, value: bytes, *, revision: int) -> int:
        """Write `value` if the key is live at `revision`, restarting its TTL; its revision,
        or KeyChanged."""
        ...

    async def delete(self, *, revision: int) -> None:
        """Remove the key if it is live at `revision`, or KeyChanged."""
        ...

    async def get(self) -> tuple[bytes, int] | None:
        """The live value and its revision, or None."""
        ...


class JetStreamLeaseKey:
    """The lease key in a JetStream KV bucket whose TTL is the lease's."""

    def __init__(self, kv: KeyValue, key: str = LEASE_KEY) -> None:
        self._kv = kv
        self._key = key

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        *,
        ttl: float,
        replicas: int,
        durability: str,
        bucket: str = LEASE_BUCKET,
    ) -> JetStreamLeaseKey:
        """Create or bind the lease bucket."""
        try:
            kv = await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    ttl=ttl,
                    history=1,
                    replicas=replicas,
                    storage=StorageType.MEMORY if durability == "memory" else StorageType.FILE,
                )
            )
        return cls(kv)

    async def create(self, value: bytes) -> int:
        """`KeyValue.create`, its wrong-sequence error translated."""
        try:
            return await self._kv.create(self._key, value)
        except nats.js.errors.KeyWrongLastSequenceError as e:
            raise KeyChanged(f"{self._key} is held") from e
        except nats.js.errors.KeyNotFoundError as e:
            # nats-py's create, refused because the key exists, reads the key to see whether
            # it is a delete marker; if the key expired in between, that read raises this
            # (seen once in CI). The key was held a moment ago and is free now: try again.
            raise KeyChanged(f"{self._key} expired while it was being created") from e

    async def update(self, value: bytes, *, revision: int) -> int:
        """`KeyValue.update` on `revision`, its wrong-sequence error translated."""
        try:
            return await self._kv.update(self._key, value, last=revision)
        except nats.js.errors.KeyWrongLastSequenceError as e:
            raise KeyChanged(f"{self._key} is no longer at revision {revision}") from e

    async def delete(self, *, revision: int) -> None:
        """A delete marker expecting `revision`, its wrong-sequence error translated."""
        try:
            await self._kv.delete(self._key, last=revision)
        except nats.js.errors.APIError as e:
            # KeyValue.delete does not translate the wrong-sequence error as update does.
            if e.err_code != WRONG_LAST_SEQUENCE:
                raise
            raise KeyChanged(f"{self._key} is no longer at revision {revision}") from e

    async def get(self) -> tuple[bytes, int] | None:
        """The key's value and revision, None when absent, deleted or expired."""
        try:
            entry = await self._kv.get(self._key)
        except nats.js.errors.KeyNotFoundError:  # deleted ones too
            return None
        if entry.value is None or entry.revision is None:
            return None
        return entry.value, entry.revision


class MemoryLeaseKey:
    """The lease key as a value, a revision and a clock (`time.monotonic` unless given), with
    the KV bucket's semantics, for unit tests."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._value: bytes | None = None
        self._revision = 0  # like a stream sequence: every write takes the next one
        self._written_at = 0.0

    def _live(self) -> tuple[bytes, int] | None:
        if self._value is None or self._clock() - self._written_at >= self._ttl:
            return None
        return self._value, self._revision

    def _write(self, value: bytes | None) -> int:
        self._value = value
        self._revision += 1
        self._written_at = self._clock()
        return self._revision

    def _check(self, revision: int) -> None:
        live = self._live()
        if live is None or live[1] != revision:
            raise KeyChanged(f"the key is not at revision {revision}")

    async def create(self, value: bytes) -> int:
        """Write `value` if the key is not live."""
        if self._live() is not None:
            raise KeyChanged("the key is held")
        return self._write(value)

    async def update(self, value: bytes, *, revision: int) -> int:
        """Write `value` if the key is live at `revision`."""
        self._check(revision)
        return self._write(value)

    async def delete(self, *, revision: int) -> None:
        """Remove the key if it is live at `revision`."""
        self._check(revision)
        self._write(None)

    async def get(self) -> tuple[bytes, int] | None:
        """The live value and revision, if any."""
        return self._live()


class Lease:
    """The writer-leader lease: whoever holds the key sequences the log until it expires."""

    def __init__(self, key: LeaseKey, node_id: str) -> None:
        self._key = key
        self._node_id = node_id
        # A new value per process: a restarted writer that takes its node's lease back still
        # changes it, which tells gateways that batches sent to the old process are lost.
        self._value = lease_value(node_id, uuid.uuid4().hex[:12])
        self._revision: int | None = None
        self.holder_seen: str | None = None

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        node_id: str,
        *,
        ttl: float,
        replicas: int,
        durability: str,
        bucket: str = LEASE_BUCKET,
    ) -> Lease:
        """The lease of `node_id` in the (created or bound) lease bucket."""
        key = await JetStreamLeaseKey.open(
            js, ttl=ttl, replicas=replicas, durability=durability, bucket=bucket
        )
        return cls(key, node_id)

    async def try_acquire(self) -> bool:
        """Take the lease if it is free (or already ours from before a restart)."""
        try:
            self._revision = await self._key.create(self._value)
            self.holder_seen = self._node_id
            return True
        except KeyChanged:
            pass
        current = await self._key.get()
        self.holder_seen = None if current is None else lease_holder(current[0])
        if current is None or self.holder_seen != self._node_id:
            return False
        return await self._update(current[1])

    async def renew(self) -> bool:
        """Extend the lease; False if it was lost (expired and taken, or changed)."""
        if self._revision is None:
            return False
        return await self._update(self._revision)

    async def _update(self, revision: int) -> bool:
        try:
            self._revision = await self._key.update(self._value, revision=revision)
            self.holder_seen = self._node_id
            return True
        except (KeyChanged, nats.errors.Error):
            # Taken by another node, or NATS unreachable: either way we cannot prove we
            # still hold it, so we stop sequencing (the log fence would stop us anyway).
            self._revision = None
            return False

    async def release(self) -> None:
        """Give the lease up so another node can take it at once."""
        if self._revision is not None:
            with contextlib.suppress(KeyChanged, nats.errors.Error):
                await self._key.delete(revision=self._revision)
            self._revision = None

    async def holder(self) -> str | None:
        """The node that holds the lease, if any."""
        current = await self._key.get()
        return None if current is None else lease_holder(current[0])
