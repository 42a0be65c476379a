"""The lease's behaviour over any `LeaseKey`, as one suite every backend must pass: the key's
compare-and-set semantics, and the writer lease built on them.

Subclass `LeaseContract` in a `Test...` class and provide a `world` fixture: a `LeaseWorld` on
one new, free key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from esdb.contracts.subjects import lease_holder
from esdb.services.writer.lease import KeyChanged, Lease, LeaseKey


@dataclass
class LeaseWorld:
    """One lease key, through one handle per connection (nodes take turns among them), and
    the clock its TTL runs on: `tick` lets a little of that time pass."""

    keys: Sequence[LeaseKey]
    ttl: float
    clock: Callable[[], float]
    tick: Callable[[], Awaitable[None]]
    _made: int = field(default=0, init=False)

    @classmethod
    def real_time(cls, keys: Sequence[LeaseKey], ttl: float) -> LeaseWorld:
        """A world whose TTL runs on the wall clock, polled every 50 ms."""
        return cls(keys, ttl, time.monotonic, lambda: asyncio.sleep(0.05))

    @property
    def key(self) -> LeaseKey:
        """The first handle on the key."""
        return self.keys[0]

    def lease(self, node_id: str) -> Lease:
        """A writer process of `node_id` competing for the key, on the next handle."""
        self._made += 1
        return Lease(self.keys[self._made % len(self.keys)], node_id)

    async def eventually(
        self, check: Callable[[], Awaitable[bool]], *, within: float, what: str
    ) -> float:
        """Wait until `check` holds, at most `within` of the world's seconds; when it did."""
        deadline = self.clock() + within
        while not await check():
            if self.clock() > deadline:
                raise AssertionError(f"{what} did not happen within {within} s")
            await self.tick()
        return self.clock()

    async def elapse(self, seconds: float) -> None:
        """Let `seconds` of the world's time pass."""
        until = self.clock() + seconds

        async def passed() -> bool:
            return self.clock() >= until

        await self.eventually(passed, within=seconds * 2 + 5, what=f"{seconds} s to pass")

    async def expire(self) -> None:
        """Wait until nobody holds the key, no longer than its TTL allows."""

        async def free() -> bool:
            return await self.key.get() is None

        await self.eventually(free, within=self.ttl * 3 + 2, what="the key to expire")


class LeaseContract:
    """Tests every lease key backend must pass; subclasses provide the `world` fixture."""

    # -- the key ----------------------------------------------------------------------------

    async def test_create_fails_while_the_key_is_live(self, world: LeaseWorld) -> None:
        revision = await world.key.create(b"a")

        with pytest.raises(KeyChanged):
            await world.keys[-1].create(b"b")

        assert await world.keys[-1].get() == (b"a", revision)

    async def test_update_needs_the_current_revision(self, world: LeaseWorld) -> None:
        first = await world.key.create(b"a")
        second = await world.key.update(b"b", revision=first)
        assert second > first

        with pytest.raises(KeyChanged):
            await world.keys[-1].update(b"c", revision=first)

        assert await world.key.get() == (b"b", second)

    async def test_delete_needs_the_current_revision_and_frees_the_key(
        self, world: LeaseWorld
    ) -> None:
        first = await world.key.create(b"a")
        second = await world.key.update(b"b", revision=first)

        with pytest.raises(KeyChanged):
            await world.key.delete(revision=first)
        assert await world.key.get() == (b"b", second)

        await world.key.delete(revision=second)
        assert await world.key.get() is None
        with pytest.raises(KeyChanged):
            await world.key.update(b"c", revision=second)
        assert await world.keys[-1].create(b"c") > second

    async def test_the_ttl_frees_the_key(self, world: LeaseWorld) -> None:
        revision = await world.key.create(b"a")

        await world.expire()

        with pytest.raises(KeyChanged):
            await world.key.update(b"b", revision=revision)
        assert await world.keys[-1].create(b"c") > revision

    # -- the lease --------------------------------------------------------------------------

    async def test_a_free_lease_is_acquired(self, world: LeaseWorld) -> None:
        lease = world.lease("node1")
        assert lease.holder_seen is None

        assert await lease.try_acquire()

        assert lease.holder_seen == "node1"
        assert await lease.holder() == "node1"
        assert await world.lease("node2").holder() == "node1"

    async def test_another_node_cannot_acquire_a_held_lease(self, world: LeaseWorld) -> None:
        first, second = world.lease("node1"), world.lease("node2")
        assert await first.try_acquire()

        assert not await second.try_acquire()

        assert second.holder_seen == "node1"
        assert not await second.renew()
        assert await first.holder() == "node1"
        assert await first.renew()

    async def test_renewing_keeps_the_lease_past_its_ttl(self, world: LeaseWorld) -> None:
        first, second = world.lease("node1"), world.lease("node2")
        assert await first.try_acquire()

        for _ in range(3):
            await world.elapse(world.ttl * 0.6)
            assert await first.renew()
            assert not await second.try_acquire()

        assert await second.holder() == "node1"

    async def test_an_expired_lease_is_taken_after_the_ttl_and_not_before(
        self, world: LeaseWorld
    ) -> None:
        first, second = world.lease("node1"), world.lease("node2")
        started = world.clock()
        assert await first.try_acquire()

        taken_at = await world.eventually(
            second.try_acquire, within=world.ttl * 3 + 2, what="node2 to take the lease"
        )

        # A little slack for the server's clock, which stamps the TTL, against ours.
        assert taken_at - started >= world.ttl * 0.9
        assert await second.holder() == "node2"

    async def test_renewing_a_lease_taken_by_another_node_fails(self, world: LeaseWorld) -> None:
        first, second = world.lease("node1"), world.lease("node2")
        assert await first.try_acquire()
        await world.expire()
        assert await second.try_acquire()

        assert not await first.renew()

        assert await first.holder() == "node2"
        assert not await first.renew()  # stays lost
        assert not await first.try_acquire()
        assert first.holder_seen == "node2"

    async def test_a_release_lets_another_node_acquire_at_once(self, world: LeaseWorld) -> None:
        first, second = world.lease("node1"), world.lease("node2")
        assert await first.try_acquire()
        assert not await second.try_acquire()

        await first.release()

        assert await second.holder() is None
        assert await second.try_acquire()
        assert await second.holder() == "node2"
        assert not await first.renew()

    async def test_a_release_after_losing_the_lease_leaves_the_new_holder_alone(
        self, world: LeaseWorld
    ) -> None:
        first, second = world.lease("node1"), world.lease("node2")
        assert await first.try_acquire()
        await world.expire()
        assert await second.try_acquire()

        await first.release()

        assert await second.holder() == "node2"
        assert await second.renew()

    async def test_a_restarted_process_of_the_holder_takes_its_lease_back(
        self, world: LeaseWorld
    ) -> None:
        before = world.lease("node1")
        assert await before.try_acquire()
        held = await world.key.get()

        after = world.lease("node1")  # the same node's writer, restarted
        assert await after.try_acquire()

        now = await world.key.get()
        assert held is not None and now is not None
        assert lease_holder(now[0]) == "node1"
        # A new value tells gateways that batches sent to the old process are lost.
        assert now[0] != held[0]
        assert now[1] > held[1]
        assert not await before.renew()
        assert await after.renew()
        assert not await world.lease("node2").try_acquire()
