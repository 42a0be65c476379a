"""The delivery state machine of one persistent subscription, on a memory store with a fake
clock: what is sent, redelivered, parked and checkpointed."""

from __future__ import annotations

import asyncio

import pytest

from esdb.contracts.errors import Unavailable
from esdb.contracts.log import CheckpointOp, LogOp, ParkOp, UnparkOp
from esdb.contracts.subscriptions import SelectorSpec, SubscriptionDefinition
from esdb.services.subscription.group import ConsumerGroup
from esdb.services.subscription.selection import selection_predicate
from esdb.shared.storage import item_keys
from esdb.shared.storage.memory import MemoryStore
from tests.builders import commit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A group over a memory store, recording what it publishes and logs."""

    def __init__(self, store: MemoryStore, **settings: int) -> None:
        self.store = store
        self.clock = Clock()
        self.sent: list[tuple[int, int]] = []  # (position, attempt)
        self.logged: list[list[LogOp]] = []
        self.fail_logging = False
        definition = SubscriptionDefinition(
            name="g",
            selector=SelectorSpec(category="order"),
            start_position=1,
            message_timeout_ms=settings.get("message_timeout_ms", 1000),
            max_retries=settings.get("max_retries", 2),
            max_in_flight=settings.get("max_in_flight", 3),
            uid="u1",
            created_us=0,
        )
        self.group = ConsumerGroup(
            "default",
            definition,
            checkpoint=0,
            reader=lambda: store,
            predicate=selection_predicate("default", definition.selector),
            publish=self.publish,
            log_ops=self.log_ops,
            reply_prefix="r",
            clock=self.clock,
        )

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str], reply: str
    ) -> None:
        assert subject == "esdb.subs.default.g"
        assert reply == f"r.default.g.{headers['Esdb-Position']}"
        self.sent.append((int(headers["Esdb-Position"]), int(headers["Esdb-Attempt"])))

    async def log_ops(self, ops: list[LogOp]) -> None:
        if self.fail_logging:
            raise Unavailable("no leader")
        self.logged.append(ops)
        with self.store.transaction(self.store.applied_sequence() + 1) as txn:
            for op in ops:
                if isinstance(op, ParkOp):
                    for p in op.positions:
                        txn.put_item(item_keys.PARKED, item_keys.parked_key("g", p), b"x")
                elif isinstance(op, UnparkOp):
                    for p in op.positions:
                        txn.delete_item(item_keys.PARKED, item_keys.parked_key("g", p))

    async def step(self, advance: float = 0.0) -> list[tuple[int, int]]:
        """Advance the clock, run one delivery round; what it sent."""
        self.clock.now += advance
        before = len(self.sent)
        self.group.expire()
        await self.group.fill()
        await self.group.flush()
        return self.sent[before:]

    def checkpoints(self) -> list[int]:
        return [op.position for ops in self.logged for op in ops if isinstance(op, CheckpointOp)]


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    # positions 1..8: order events at 1, 2, 4, 5, 7, 8
    commit(
        store,
        1,
        [
            (s, "E")
            for s in (
                "order-1",
                "order-2",
                "user-1",
                "order-1",
                "order-3",
                "user-2",
                "order-1",
                "order-2",
            )
        ],
    )
    return store


async def test_delivers_selected_events_in_order_up_to_the_window(store: MemoryStore) -> None:
    h = Harness(store)
    assert await h.step() == [(1, 1), (2, 1), (4, 1)]
    assert await h.step() == []
    assert h.group.ack([1, 2]) == 2
    assert await h.step() == [(5, 1), (7, 1)]


async def test_checkpoint_is_the_lowest_unsettled_minus_one(store: MemoryStore) -> None:
    h = Harness(store)
    await h.step()
    h.group.ack([2, 4])
    await h.step(advance=0.5)
    assert h.group.settled_up_to() == 0
    h.group.ack([1])
    await h.step(advance=1.0)
    assert h.group.checkpoint == 4 and h.checkpoints()[-1] == 4
    h.group.ack([5, 7, 8])
    await h.step(advance=1.0)
    await h.step(advance=1.0)
    assert h.group.checkpoint == 8


async def test_a_timed_out_delivery_comes_again_and_is_parked_after_max_retries(
    store: MemoryStore,
) -> None:
    h = Harness(store, max_retries=1, max_in_flight=1)
    assert await h.step() == [(1, 1)]
    assert await h.step(advance=1.1) == [(1, 2)]
    assert await h.step(advance=1.1) == [(2, 1)]  # 1 is parked: attempts exhausted
    parks = [op for ops in h.logged for op in ops if isinstance(op, ParkOp)]
    assert [op.positions for op in parks] == [[1]]
    assert "message timeout" in parks[0].reason
    h.group.ack([2])
    await h.step(advance=1.0)
    assert h.group.checkpoint == 3  # parked 1 does not hold it back; 3 is not selected


async def test_nack_retry_park_skip_and_stop(store: MemoryStore) -> None:
    h = Harness(store, max_in_flight=4)
    await h.step()
    h.group.nack([1], "retry", "later", "c1")
    h.group.nack([2], "park", "bad", "c1")
    h.group.nack([4], "skip", "", "c1")
    h.group.nack([5], "stop", "", "c1")
    sent = await h.step()
    assert sorted(sent) == [(1, 2), (5, 1), (7, 1), (8, 1)]
    assert store.count_items(item_keys.PARKED, item_keys.parked_prefix("g")) == 1


async def test_a_full_consumer_hands_a_delivery_back_without_an_attempt(
    store: MemoryStore,
) -> None:
    h = Harness(store, max_in_flight=1)
    await h.step()
    h.group.receipt(1, "busy", accepted=False)
    assert await h.step() == []  # backed off for a moment
    assert await h.step(advance=0.05) == [(1, 1)]


async def test_receipts_widen_the_window_per_consumer(store: MemoryStore) -> None:
    h = Harness(store, max_in_flight=2)
    assert len(await h.step()) == 2
    h.group.receipt(1, "a", accepted=True)
    h.group.receipt(2, "b", accepted=True)
    assert len(await h.step()) == 2
    assert {c.consumer: c.in_flight for c in h.group.consumers()} == {"a": 1, "b": 1}


async def test_nothing_is_settled_while_the_log_refuses_parks(store: MemoryStore) -> None:
    h = Harness(store, max_retries=0, max_in_flight=1, message_timeout_ms=60_000)
    h.fail_logging = True
    await h.step()
    h.group.nack([1], "retry", "", None)  # attempts exhausted: park
    await h.step(advance=2.0)
    assert h.checkpoints() == [] and h.group.checkpoint == 0
    h.fail_logging = False
    await h.step(advance=2.0)
    assert store.count_items(item_keys.PARKED, item_keys.parked_prefix("g")) == 1


async def test_replay_delivers_parked_events_and_unparks_acked_ones(store: MemoryStore) -> None:
    h = Harness(store, max_in_flight=2)
    await h.step()
    h.group.nack([1, 2], "park", "", None)
    await h.step(advance=1.0)
    h.group.replay_parked()
    h.group.ack([4, 5])
    sent = await h.step(advance=1.0)
    assert sent == [(1, 1), (2, 1)]
    h.group.ack([1])
    h.group.nack([2], "park", "", None)
    await h.step(advance=1.0)
    remaining = store.items(item_keys.PARKED, item_keys.parked_prefix("g"), limit=10)
    assert [item_keys.parked_position(k) for k, _ in remaining] == [2]


async def test_run_delivers_when_woken(store: MemoryStore) -> None:
    h = Harness(store)
    wake = asyncio.Event()
    task = asyncio.create_task(h.group.run(lambda: wake))
    try:
        async with asyncio.timeout(2):
            while len(h.sent) < 3:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_without_consumers_one_delivery_probes_until_one_answers(
    store: MemoryStore,
) -> None:
    h = Harness(store)
    await h.step()
    for position in (1, 2, 4):
        h.group.unheard(position)
    assert await h.step() == []
    assert await h.step(advance=0.3) == [(1, 1)]
    assert await h.step() == []
    h.group.receipt(1, "c", accepted=True)
    assert await h.step() == [(2, 1), (4, 1)]  # the window again: 3 with 1 in flight
