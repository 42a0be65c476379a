"""The replicated log port's behaviour, as one suite every `ReplicatedLog` must pass: what the
writer's sequencer and node rely on.

Subclass `LogContract` in a `Test...` class and provide a `logs` fixture yielding two handles on
one new, empty log: the second as another node sees it (its own connection, in a cluster to
another server). Each test gets a log of its own, so a test may leave it unusable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats.errors
import pytest

from esdb.services.writer.log import MAX_ENTRY_BYTES, EntryTooLarge, FencedOut, ReplicatedLog

# An entry's bytes come back exactly: NUL, newline, CR and high bytes included.
AWKWARD = bytes(range(256)) + b"\n\r\n\x00"
# Headers (the fences and the entry id) travel in the same message as the entry.
HEADER_ROOM = 1024
# How long a read waits for an entry it expects; an append that fails gives up sooner.
READ_TIMEOUT_S = 10.0


Entries = AsyncIterator[tuple[int, bytes]]


def entry(n: int) -> bytes:
    """A distinct, recognisable entry."""
    return f"entry-{n}".encode() + AWKWARD


@asynccontextmanager
async def reading(log: ReplicatedLog, after: int) -> AsyncIterator[Entries]:
    """`log.entries(after)`, closed on exit as the writer's tail closes it."""
    entries = log.entries(after)
    try:
        yield entries
    finally:
        await entries.aclose()  # type: ignore[attr-defined]


async def take(entries: Entries, count: int) -> list[tuple[int, bytes]]:
    """The next `count` entries, failing the test if they do not come in time."""

    async def collect() -> list[tuple[int, bytes]]:
        return [await anext(entries) for _ in range(count)]

    return await asyncio.wait_for(collect(), READ_TIMEOUT_S)


async def append_all(log: ReplicatedLog, entries: list[bytes]) -> list[int]:
    """Append one after another, each fenced on the log's end; their sequences."""
    sequences = []
    for data in entries:
        sequences.append(await log.append(data, expected_last=await log.last_sequence()))
    return sequences


async def takes_writes(log: ReplicatedLog, *, expected_last: int) -> bool:
    """Whether the log accepts a correctly fenced entry now. An append that cannot be
    acknowledged (a stopped stream) fails within the log's publish timeout."""
    try:
        return await log.append(b"probe", expected_last=expected_last) == expected_last + 1
    except (nats.errors.Error, TimeoutError):
        return False


def needs_id_check(log: ReplicatedLog) -> None:
    """Skip where the log does not check `expected_last_id` on accepting an entry: there the
    id fence is not part of the contract (`test_the_declared_id_capability_is_truthful`)."""
    if not log.checks_id_on_accept:
        pytest.skip("this log checks expected_last_id only when it applies an entry")


class LogContract:
    """Tests every replicated log must pass; subclasses provide the `logs` fixture."""

    @pytest.fixture
    def log(self, logs: tuple[ReplicatedLog, ReplicatedLog]) -> ReplicatedLog:
        """The handle a test appends through."""
        return logs[0]

    @pytest.fixture
    def other(self, logs: tuple[ReplicatedLog, ReplicatedLog]) -> ReplicatedLog:
        """A second handle on the same log, as another node has."""
        return logs[1]

    # -- appending --------------------------------------------------------------------------

    async def test_an_empty_log_ends_at_zero(self, log: ReplicatedLog) -> None:
        assert await log.last_sequence() == 0

    async def test_appends_get_dense_sequences_from_one(self, log: ReplicatedLog) -> None:
        assert [await log.append(entry(n), expected_last=n - 1) for n in (1, 2, 3)] == [1, 2, 3]
        assert await log.last_sequence() == 3

    async def test_an_append_is_seen_at_once_through_another_handle(
        self, log: ReplicatedLog, other: ReplicatedLog
    ) -> None:
        assert await log.append(entry(1), expected_last=0) == 1
        assert await other.last_sequence() == 1
        assert await other.append(entry(2), expected_last=1) == 2
        assert await log.last_sequence() == 2

    @pytest.mark.parametrize("expected_last", [0, 1, 3, 100])
    async def test_a_stale_or_future_expected_last_is_fenced_out_and_writes_nothing(
        self, log: ReplicatedLog, expected_last: int
    ) -> None:
        await append_all(log, [entry(1), entry(2)])

        with pytest.raises(FencedOut):
            await log.append(b"intruder", expected_last=expected_last)

        assert await log.last_sequence() == 2
        async with reading(log, 0) as entries:
            assert await take(entries, 2) == [(1, entry(1)), (2, entry(2))]
        assert await log.append(entry(3), expected_last=2) == 3  # the log goes on

    async def test_pipelined_appends_each_fenced_on_its_predecessor_all_land_in_order(
        self, log: ReplicatedLog
    ) -> None:
        await append_all(log, [entry(0)])
        appends = [log.append(entry(n), expected_last=n) for n in range(1, 9)]

        assert await asyncio.gather(*appends) == list(range(2, 10))
        async with reading(log, 1) as entries:
            assert await take(entries, 8) == [(n + 1, entry(n)) for n in range(1, 9)]

    async def test_of_two_appenders_racing_for_one_sequence_exactly_one_wins(
        self, log: ReplicatedLog, other: ReplicatedLog
    ) -> None:
        for last in range(5):
            mine, theirs = f"mine-{last}".encode(), f"theirs-{last}".encode()
            outcomes = await asyncio.gather(
                log.append(mine, expected_last=last),
                other.append(theirs, expected_last=last),
                return_exceptions=True,
            )
            won = [o for o in outcomes if not isinstance(o, BaseException)]
            assert won == [last + 1], outcomes
            assert sum(isinstance(o, FencedOut) for o in outcomes) == 1, outcomes
            winner = mine if outcomes[0] == last + 1 else theirs
            async with reading(other, last) as entries:
                assert await take(entries, 1) == [(last + 1, winner)]
        assert await log.last_sequence() == 5

    async def test_an_entry_near_the_size_limit_round_trips(
        self, log: ReplicatedLog, other: ReplicatedLog
    ) -> None:
        big = (AWKWARD * (MAX_ENTRY_BYTES // len(AWKWARD) + 1))[: MAX_ENTRY_BYTES - HEADER_ROOM]

        assert await log.append(big, expected_last=0, entry_id="big") == 1
        async with reading(other, 0) as entries:
            assert await take(entries, 1) == [(1, big)]

    async def test_an_entry_over_the_size_limit_is_refused_and_writes_nothing(
        self, log: ReplicatedLog
    ) -> None:
        await append_all(log, [entry(1)])

        with pytest.raises(EntryTooLarge):
            await log.append(b"x" * (MAX_ENTRY_BYTES + 1), expected_last=1)

        assert await log.last_sequence() == 1
        assert await log.append(entry(2), expected_last=1) == 2

    # -- reading ----------------------------------------------------------------------------

    @pytest.mark.parametrize("after", [0, 2, 5])
    async def test_entries_yields_everything_after_in_order_then_new_entries(
        self, log: ReplicatedLog, other: ReplicatedLog, after: int
    ) -> None:
        await append_all(log, [entry(n) for n in range(1, 6)])

        async with reading(other, after) as entries:
            assert await take(entries, 5 - after) == [(n, entry(n)) for n in range(after + 1, 6)]
            # Appended while the reader waits, through either handle.
            assert await log.append(entry(6), expected_last=5) == 6
            assert await take(entries, 1) == [(6, entry(6))]
            assert await other.append(entry(7), expected_last=6) == 7
            assert await take(entries, 1) == [(7, entry(7))]

    async def test_a_reader_of_an_empty_log_gets_the_first_entry_when_it_commits(
        self, log: ReplicatedLog, other: ReplicatedLog
    ) -> None:
        async with reading(other, 0) as entries:
            waiting = asyncio.create_task(take(entries, 1))
            assert await log.append(entry(1), expected_last=0) == 1
            assert await waiting == [(1, entry(1))]

    async def test_readers_are_independent(self, log: ReplicatedLog, other: ReplicatedLog) -> None:
        await append_all(log, [entry(n) for n in range(1, 4)])

        async with reading(log, 0) as first, reading(other, 1) as second:
            assert await take(first, 3) == [(n, entry(n)) for n in (1, 2, 3)]
            assert await take(second, 2) == [(n, entry(n)) for n in (2, 3)]

    async def test_a_reader_closed_midway_resumes_from_where_it_stopped(
        self, log: ReplicatedLog
    ) -> None:
        # The writer's tail stops at the first entry it leads with and later resumes from
        # the sequence it applied.
        await append_all(log, [entry(n) for n in range(1, 6)])
        async with reading(log, 0) as entries:
            assert await take(entries, 2) == [(1, entry(1)), (2, entry(2))]

        async with reading(log, 2) as entries:
            assert await take(entries, 3) == [(n, entry(n)) for n in (3, 4, 5)]

    # -- the predecessor-id fence -----------------------------------------------------------

    async def test_the_declared_id_capability_is_truthful(self, log: ReplicatedLog) -> None:
        """A wrong `expected_last_id` is refused either way, but only a log that checks it on
        accepting the entry goes on taking writes afterwards; a clustered JetStream stream
        checks it when applying, where a mismatch stops the stream."""
        assert await log.append(entry(1), expected_last=0, entry_id="one") == 1

        with pytest.raises(FencedOut):
            await log.append(entry(2), expected_last=1, entry_id="two", expected_last_id="nope")

        assert await takes_writes(log, expected_last=1) is log.checks_id_on_accept

    async def test_the_id_fence_admits_the_named_predecessor(self, log: ReplicatedLog) -> None:
        needs_id_check(log)
        assert await log.append(entry(1), expected_last=0, entry_id="one") == 1
        two = await log.append(entry(2), expected_last=1, entry_id="two", expected_last_id="one")
        assert two == 2
        assert await log.append(entry(3), expected_last=2, expected_last_id="two") == 3

    async def test_a_wrong_predecessor_id_is_fenced_out_and_writes_nothing(
        self, log: ReplicatedLog
    ) -> None:
        needs_id_check(log)
        assert await log.append(entry(1), expected_last=0, entry_id="one") == 1

        with pytest.raises(FencedOut):
            await log.append(entry(2), expected_last=1, entry_id="two", expected_last_id="nope")

        assert await log.last_sequence() == 1
        assert await log.append(entry(2), expected_last=1, expected_last_id="one") == 2

    @pytest.mark.parametrize("before", [[], [None], ["one", None]])
    async def test_the_id_fence_needs_a_last_entry_with_that_id(
        self, log: ReplicatedLog, before: list[str | None]
    ) -> None:
        needs_id_check(log)
        for n, entry_id in enumerate(before):
            await log.append(entry(n), expected_last=n, entry_id=entry_id)

        with pytest.raises(FencedOut):
            await log.append(b"x", expected_last=len(before), expected_last_id="one")

        assert await log.last_sequence() == len(before)

    async def test_a_fenced_out_entry_does_not_become_the_predecessor(
        self, log: ReplicatedLog, other: ReplicatedLog
    ) -> None:
        # The sequencer's interleaving: a leader pipelines L.2 (expecting 1) and L.3
        # (expecting 2 and L.2); another leader's entry takes sequence 2 first. L.2 is fenced
        # out, and L.3, planned on top of it, fits the sequence but must not land.
        needs_id_check(log)
        assert await log.append(entry(1), expected_last=0, entry_id="L.1") == 1
        assert await other.append(b"other leader", expected_last=1, entry_id="M.2") == 2

        with pytest.raises(FencedOut):
            await log.append(entry(2), expected_last=1, entry_id="L.2", expected_last_id="L.1")
        with pytest.raises(FencedOut):
            await log.append(entry(3), expected_last=2, entry_id="L.3", expected_last_id="L.2")

        assert await log.last_sequence() == 2
        assert await other.append(entry(3), expected_last=2, expected_last_id="M.2") == 3

    async def test_pipelined_appends_fenced_on_sequence_and_id_all_land(
        self, log: ReplicatedLog
    ) -> None:
        needs_id_check(log)
        assert await log.append(entry(1), expected_last=0, entry_id="t.1") == 1
        appends = [
            log.append(
                entry(n), expected_last=n - 1, entry_id=f"t.{n}", expected_last_id=f"t.{n - 1}"
            )
            for n in range(2, 8)
        ]

        assert await asyncio.gather(*appends) == list(range(2, 8))
        async with reading(log, 0) as entries:
            assert await take(entries, 7) == [(n, entry(n)) for n in range(1, 8)]
