"""The leader's sequencer over an in-memory log: batching, replies after apply, stepping down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from esdb.contracts.commands import EXPECT_NO_STREAM, WriteOutcome
from esdb.contracts.errors import ErrorCode
from esdb.contracts.log import (
    AppendOp,
    CheckpointOp,
    CreateStoreOp,
    LogEntry,
    SnapshotOp,
    decode_entry,
    encode_entry,
)
from esdb.services.writer.applier import Applier
from esdb.services.writer.apply import ApplyError
from esdb.services.writer.log import MemoryLog
from esdb.services.writer.sequencer import (
    LeadershipLost,
    OpsRequest,
    Sequencer,
    approximate_bytes,
)
from esdb.shared.storage.catalog import memory_catalog
from tests.builders import append, write


@dataclass
class Leader:
    """A sequencer and the task running it."""

    sequencer: Sequencer
    run: asyncio.Task[None]


MakeLeader = Callable[..., Awaitable[Leader]]


class _FailingApplier(Applier):
    """An applier whose stores break once `broken` is set."""

    broken = False

    def apply_locked(self, sequence: int, entry: LogEntry, raw: bytes | None = None) -> None:
        if self.broken:
            raise ApplyError("the store is broken")
        super().apply_locked(sequence, entry, raw)


@pytest.fixture
def log() -> MemoryLog:
    return MemoryLog()


@pytest.fixture
def applier() -> _FailingApplier:
    return _FailingApplier(memory_catalog())


@pytest.fixture
async def make_leader(log: MemoryLog, applier: Applier) -> AsyncIterator[MakeLeader]:
    """Starts a sequencer that has created the default store (log entry 1)."""
    started: list[Leader] = []

    async def make(max_batch_events: int = 1000, max_in_flight: int = 3) -> Leader:
        sequencer = Sequencer(
            log,
            applier,
            node_id="n1",
            max_batch_events=max_batch_events,
            max_in_flight=max_in_flight,
        )
        async with applier.lock:
            await sequencer.append_locked([CreateStoreOp(store="default")])
        started.append(Leader(sequencer, asyncio.create_task(sequencer.run())))
        return started[-1]

    yield make
    for leader in started:
        leader.run.cancel()
        await asyncio.gather(leader.run, return_exceptions=True)


async def log_entries(log: MemoryLog) -> list[LogEntry]:
    """Every entry in the log so far, decoded."""
    count = await log.last_sequence()
    tail = log.entries(0)
    try:
        return [decode_entry((await anext(tail))[1]) for _ in range(count)]
    finally:
        await tail.aclose()  # type: ignore[attr-defined]


def events_in(entry: LogEntry) -> int:
    return sum(len(op.events) for op in entry.ops if isinstance(op, AppendOp))


def error_code(outcome: WriteOutcome) -> str | None:
    return None if outcome.error is None else outcome.error.code


async def test_concurrent_writes_share_one_entry(
    make_leader: MakeLeader, log: MemoryLog, applier: Applier
) -> None:
    leader = await make_leader()

    async def client(i: int) -> WriteOutcome:
        return await leader.sequencer.submit(write(append(f"order-{i}", EXPECT_NO_STREAM, 2)))

    outcomes = await asyncio.gather(*(client(i) for i in range(10)))

    assert [o.error for o in outcomes] == [None] * 10
    spans = sorted((r.first_position, r.last_position) for o in outcomes for r in o.results or [])
    assert spans == [(p, p + 1) for p in range(1, 21, 2)]
    entries = await log_entries(log)
    assert len(entries) == 2  # the store's creation, then one batch
    assert len(entries[1].ops) == 10
    assert entries[1].leader == "n1"


async def test_a_batch_holds_at_most_max_batch_events(
    make_leader: MakeLeader, log: MemoryLog
) -> None:
    leader = await make_leader(max_batch_events=5)

    outcomes = await asyncio.gather(
        *(
            leader.sequencer.submit(write(append(f"order-{i}", EXPECT_NO_STREAM, 2)))
            for i in range(7)
        )
    )

    assert [o.error for o in outcomes] == [None] * 7
    batches = [events_in(entry) for entry in await log_entries(log)]
    assert batches == [0, 4, 4, 4, 2]


async def test_an_oversized_write_goes_alone(make_leader: MakeLeader, log: MemoryLog) -> None:
    leader = await make_leader(max_batch_events=2)

    outcome = await leader.sequencer.submit(write(append("order-1", EXPECT_NO_STREAM, 5)))

    assert outcome.error is None
    assert [len(entry.ops) for entry in await log_entries(log)] == [1, 1]


async def test_replies_come_after_apply_with_per_request_outcomes(
    make_leader: MakeLeader, applier: Applier
) -> None:
    leader = await make_leader()

    first = leader.sequencer.submit(write(append("order-1", EXPECT_NO_STREAM, 1)))
    clash = leader.sequencer.submit(write(append("order-1", EXPECT_NO_STREAM, 1)))
    other = leader.sequencer.submit(write(append("user-7", EXPECT_NO_STREAM, 1)))
    outcomes = await asyncio.gather(first, clash, other)

    assert [error_code(o) for o in outcomes] == [None, ErrorCode.WRONG_EXPECTED_VERSION, None]
    store = applier.catalog.get("default")
    for outcome in (outcomes[0], outcomes[2]):
        (result,) = outcome.results or []
        stored = store.get_event(result.last_position)
        assert stored is not None  # readable as soon as the reply is out
    assert applier.catalog.applied_sequence() == 2


async def test_being_fenced_out_steps_down_and_fails_every_waiting_write(
    make_leader: MakeLeader, log: MemoryLog, applier: Applier
) -> None:
    leader = await make_leader(max_batch_events=2, max_in_flight=1)
    # Another leader appends behind this one's back.
    await log.append(b"another leader's entry", expected_last=await log.last_sequence())

    in_flight = leader.sequencer.submit(write(append("order-1", EXPECT_NO_STREAM, 2)))
    queued = [
        leader.sequencer.submit(write(append(f"user-{i}", EXPECT_NO_STREAM, 2))) for i in range(2)
    ]

    with pytest.raises(LeadershipLost, match="fenced out"):
        await leader.run

    # The batch in flight may or may not have landed as far as its client knows: a timeout.
    assert error_code(in_flight.result()) == ErrorCode.TIMEOUT
    assert [error_code(f.result()) for f in queued] == [ErrorCode.UNAVAILABLE] * 2
    late = leader.sequencer.submit(write(append("order-2")))
    assert late.done() and error_code(late.result()) == ErrorCode.UNAVAILABLE
    assert applier.catalog.applied_sequence() == 1
    assert await log.last_sequence() == 2


async def test_a_failed_apply_fails_the_batch_instead_of_leaving_it_waiting(
    make_leader: MakeLeader, applier: _FailingApplier
) -> None:
    leader = await make_leader(max_batch_events=2, max_in_flight=1)
    applier.broken = True

    in_flight = leader.sequencer.submit(write(append("order-1", EXPECT_NO_STREAM, 2)))
    queued = leader.sequencer.submit(write(append("user-7", EXPECT_NO_STREAM, 2)))

    with pytest.raises(ApplyError):
        await leader.run

    assert in_flight.done() and error_code(in_flight.result()) == ErrorCode.TIMEOUT
    assert queued.done() and error_code(queued.result()) == ErrorCode.UNAVAILABLE


async def test_close_finishes_the_queued_writes_then_stops(
    make_leader: MakeLeader, log: MemoryLog
) -> None:
    leader = await make_leader(max_batch_events=2)
    futures = [
        leader.sequencer.submit(write(append(f"order-{i}", EXPECT_NO_STREAM, 2))) for i in range(3)
    ]

    leader.sequencer.close()
    await leader.run

    assert [error_code(f.result()) for f in futures] == [None] * 3
    assert await log.last_sequence() == 4
    late = leader.sequencer.submit(write(append("order-9")))
    assert late.done() and error_code(late.result()) == ErrorCode.UNAVAILABLE


class _SlowLog(MemoryLog):
    """A log whose appends wait until released, to observe pipelining."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.waiting = 0

    async def append(self, entry: bytes, **fence: Any) -> int:
        self.waiting += 1
        await self.release.wait()
        return await super().append(entry, **fence)


async def held_leader(log: _SlowLog) -> tuple[Sequencer, Applier, asyncio.Task[None]]:
    """A running leader (store created) whose log appends wait until `log.release`."""
    log.release.set()
    applier = Applier(memory_catalog())
    sequencer = Sequencer(log, applier, node_id="n1", max_batch_events=2, max_in_flight=3)
    async with applier.lock:
        await sequencer.append_locked([CreateStoreOp(store="default")])
    log.release.clear()
    return sequencer, applier, asyncio.create_task(sequencer.run())


async def appends_waiting(log: _SlowLog, count: int) -> None:
    """Return once `count` appends (the store's creation included) reached the log."""

    async def reached() -> None:
        while log.waiting < count:
            await asyncio.sleep(0)

    await asyncio.wait_for(reached(), timeout=5)


async def test_entries_are_pipelined_then_applied_and_answered_in_log_order() -> None:
    log = _SlowLog()
    sequencer, applier, run = await held_leader(log)
    futures = [sequencer.submit(write(append("order-1", version, 2))) for version in (-1, 1, 3)]

    await appends_waiting(log, 4)
    assert applier.catalog.applied_sequence() == 1, "three entries in flight, none applied yet"
    log.release.set()
    outcomes = await asyncio.wait_for(asyncio.gather(*futures), timeout=5)
    assert [o.results[0].first_version for o in outcomes if o.results] == [0, 2, 4]
    assert applier.catalog.applied_sequence() == 4
    sequencer.close()
    await asyncio.wait_for(run, timeout=5)


async def test_a_pipelined_entry_never_lands_on_another_leaders_entry() -> None:
    """Entry B is planned on top of this leader's entry A. If another leader's entry takes
    A's place in the log, A is fenced out, and B must be too: B's expected sequence would
    fit, but B requires A itself before it (seen once: every writer then stopped on an entry
    that did not follow the state)."""
    log = _SlowLog()
    sequencer, _, run = await held_leader(log)
    first = sequencer.submit(write(append("order-1", EXPECT_NO_STREAM, 2)))
    second = sequencer.submit(write(append("order-2", EXPECT_NO_STREAM, 2)))

    await appends_waiting(log, 3)
    other = encode_entry(LogEntry(ops=[CheckpointOp("default", "$other", 1)], leader="n2"))
    assert await MemoryLog.append(log, other, expected_last=1) == 2  # the other leader's
    log.release.set()

    with pytest.raises(LeadershipLost):
        await asyncio.wait_for(run, timeout=5)
    assert await log.last_sequence() == 2, "an entry landed on top of the other leader's"
    for outcome in (await first, await second):
        assert error_code(outcome) == ErrorCode.TIMEOUT  # unknown to the client: retry


def test_ops_count_at_their_encoded_size_toward_an_entry() -> None:
    big = SnapshotOp("default", "src", "stream", 1, b"x" * (1 << 20), b"", "application/json", 0)
    small = CheckpointOp("default", "$emitter", 7)

    assert approximate_bytes(OpsRequest([big])) > 1 << 20
    assert approximate_bytes(OpsRequest([small])) < 64


class _FenceRecordingLog(MemoryLog):
    """Records the fence each append carried."""

    def __init__(self) -> None:
        super().__init__()
        self.fences: list[dict[str, Any]] = []

    async def append(self, entry: bytes, **fence: Any) -> int:
        self.fences.append(fence)
        return await super().append(entry, **fence)


async def test_one_entry_at_a_time_is_fenced_by_sequence_alone() -> None:
    """A cluster's leader sends one entry at a time (writer/node.py): a clustered JetStream
    stream checks Nats-Expected-Last-Msg-Id only as it applies the entry, and a mismatch
    there stopped the stream. Each entry is then planned on an acknowledged prefix, so its
    expected sequence is a sound fence, and no id is required."""
    log = _FenceRecordingLog()
    applier = Applier(memory_catalog())
    sequencer = Sequencer(log, applier, node_id="n1", max_batch_events=2, max_in_flight=1)
    async with applier.lock:
        await sequencer.append_locked([CreateStoreOp(store="default")])
    run = asyncio.create_task(sequencer.run())
    futures = [sequencer.submit(write(append("order-1", version, 2))) for version in (-1, 1, 3)]
    outcomes = await asyncio.wait_for(asyncio.gather(*futures), timeout=5)
    assert [o.results[0].first_version for o in outcomes if o.results] == [0, 2, 4]
    assert len(log.fences) == 4
    assert [f.get("expected_last_id") for f in log.fences] == [None] * 4
    assert [f["expected_last"] for f in log.fences] == [0, 1, 2, 3]
    sequencer.close()
    await asyncio.wait_for(run, timeout=5)
