"""`JetStreamLeaseKey` turns nats-py's create race into a refused acquire, not a crash."""

from __future__ import annotations

from typing import Any, cast

import nats.js.errors
import pytest
from nats.js.kv import KeyValue

from esdb.services.writer.lease import JetStreamLeaseKey, KeyChanged, Lease


class ExpiringWhileCreated:
    """A bucket whose key expires between nats-py's refused create and its check of the key:
    `KeyValue.create` then raises `KeyNotFoundError`. Afterwards the key is free."""

    def __init__(self) -> None:
        self.creates = 0

    async def create(self, key: str, value: bytes) -> int:
        self.creates += 1
        if self.creates == 1:
            raise nats.js.errors.KeyNotFoundError
        return 7

    async def get(self, key: str) -> Any:
        raise nats.js.errors.KeyNotFoundError


async def test_a_key_that_expires_while_it_is_created_is_a_changed_key() -> None:
    key = JetStreamLeaseKey(cast(KeyValue, ExpiringWhileCreated()))
    with pytest.raises(KeyChanged, match="expired while it was being created"):
        await key.create(b"node1:run")


async def test_the_lease_is_not_taken_then_and_is_taken_on_the_next_try() -> None:
    lease = Lease(JetStreamLeaseKey(cast(KeyValue, ExpiringWhileCreated())), "node1")
    assert not await lease.try_acquire()
    assert await lease.try_acquire()
