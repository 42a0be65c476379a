"""The emitter's core without NATS: while this node's writer holds the lease (an in-memory
cluster view says who does) it catches up from the node's stores (an in-memory catalog) and
then publishes from the log (an in-memory log), not waiting for the writer to apply."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import pytest

from esdb.contracts.log import (
    AppendOp,
    CheckpointOp,
    CreateStoreOp,
    LogEntry,
    LogOp,
    RemoveStoreOp,
    RestoreStreamOp,
    StampedEvent,
    encode_entry,
)
from esdb.contracts.subjects import EMITTER_CHECKPOINT
from esdb.contracts.topics import POSITION_HEADER, event_subject
from esdb.services.emitter import service
from esdb.services.emitter.fanout import FanoutError, LogFanout
from esdb.services.emitter.service import Emitter
from esdb.services.writer.apply import apply_entry
from esdb.services.writer.log import MemoryLog
from esdb.shared.cluster_view import MemoryClusterView
from esdb.shared.storage.catalog import Catalog, read_checkpoint
from esdb.shared.storage.port import StoreReader
from tests.builders import NOW_US, event_id
from tests.fanout_frames import MAX_PAYLOAD, Published, parse_frames
from tests.waiting import eventually, idle


class Node:
    """A writer leader over a log and this node's catalog (it applies what it logs, unless
    told to hold back), and NATS as the emitter sees it: what was published and flushed."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.log = MemoryLog()
        self.entries: list[LogEntry] = [LogEntry(ops=[CreateStoreOp("default")])]
        self.published: list[Published] = []
        self.flushed = 0
        self.logged: list[LogOp] = []
        self.opened: Callable[[str], None] = lambda store: None
        self.failing_sends = 0
        self._heads: dict[str, tuple[dict[str, int], int]] = {}
        self.fanouts = 0
        self.tails_closed = 0

    async def start(self) -> None:
        # The catalog fixture applied entry 1 (the default store) itself: log it too.
        await self.log.append(encode_entry(self.entries[0]), expected_last=0)

    async def commit(self, ops: list[LogOp], *, apply: bool = True) -> int:
        """Log an entry of `ops` (and apply it, with everything logged before)."""
        for op in ops:
            if isinstance(op, RemoveStoreOp):
                self._heads.pop(op.store, None)
        entry = LogEntry(ops=ops)
        self.entries.append(entry)
        sequence = await self.log.append(encode_entry(entry), expected_last=len(self.entries) - 1)
        if apply:
            self.apply_logged()
        return sequence

    def apply_logged(self) -> None:
        """The writer catches up with the log."""
        for sequence in range(self.catalog.applied_sequence() + 1, len(self.entries) + 1):
            apply_entry(self.catalog, sequence, self.entries[sequence - 1])

    async def append(
        self, stream: str, events: int = 1, store: str = "default", *, apply: bool = True
    ) -> list[int]:
        """Log an append as the leader would stamp it; the positions it takes."""
        op = self.append_op(stream, events, store)
        await self.commit([op], apply=apply)
        return list(range(op.first_position, op.first_position + events))

    def append_op(self, stream: str, events: int = 1, store: str = "default") -> AppendOp:
        """The next append to `stream`, after everything logged (applied or not)."""
        versions, position = self._heads.setdefault(store, ({}, 0))
        version = versions.get(stream, -1) + 1
        versions[stream] = version + events - 1
        self._heads[store] = (versions, position + events)
        stamped = [
            StampedEvent(event_id(), "Happened", b'{"n":1}', b"", "application/json", NOW_US)
            for _ in range(events)
        ]
        return AppendOp(store, stream, version, position + 1, stamped)

    async def tail(self, after: int) -> AsyncGenerator[tuple[int, bytes], None]:
        try:
            async for entry in self.log.entries(after):
                yield entry
        finally:
            self.tails_closed += 1

    def store(self, name: str) -> StoreReader:
        self.opened(name)
        return self.catalog.get(name)

    async def send(self, frames: bytes) -> None:
        if self.failing_sends:
            self.failing_sends -= 1
            raise ConnectionError("NATS went away")
        self.published.extend(parse_frames(frames))

    async def flush(self) -> None:
        self.flushed = len(self.published)

    async def log_ops(self, ops: list[LogOp]) -> None:
        self.logged.extend(ops)
        await self.commit(ops)

    def positions(self, store: str = "default") -> list[int]:
        prefix = event_subject(store, "x", "y").split(".")[:3]
        return [
            int(message.headers[POSITION_HEADER])
            for message in self.published
            if message.subject.split(".")[:3] == prefix
        ]

    def fanout(self) -> LogFanout:
        self.fanouts += 1
        return LogFanout(
            system=lambda: contextlib.nullcontext(self.catalog.system),
            stores=self.store,
            tail=self.tail,
            send=self.send,
            flush=self.flush,
            log_ops=self.log_ops,
            max_payload=MAX_PAYLOAD,
        )


@pytest.fixture
async def node(catalog: Catalog) -> Node:
    node = Node(catalog)
    await node.start()
    return node


@pytest.fixture
def view() -> MemoryClusterView:
    return MemoryClusterView("node1")


@pytest.fixture
async def emitter(node: Node, view: MemoryClusterView) -> AsyncIterator[Emitter]:
    emitter = Emitter(view, node.fanout)
    stop = asyncio.Event()
    running = asyncio.create_task(emitter.run(stop))
    yield emitter
    stop.set()
    await asyncio.wait_for(running, 5)


async def following(emitter: Emitter, node: Node) -> LogFanout:
    """The emitter's fan-out, once it follows the log (its catch-up done)."""
    await eventually(
        lambda: emitter.fanout is not None and emitter.fanout.sequence == len(node.entries),
        what="the fan-out to reach the end of the log",
    )
    assert emitter.fanout is not None
    return emitter.fanout


async def test_a_follower_publishes_nothing(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    view.lead("node2")
    await node.append("order-1", events=3)
    await idle()
    assert node.published == []
    assert emitter.stores == []


async def test_the_lease_holder_publishes_every_event_once_in_position_order(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    await node.append("order-1", events=2)
    await node.append("invoice-7")
    view.set_lease("node1")  # its writer need not serve yet
    await eventually(lambda: len(node.published) == 3, what="three events published")
    await node.append("order-1")
    await eventually(lambda: len(node.published) == 4, what="the event appended since")
    assert node.positions() == [1, 2, 3, 4]
    assert [message.subject for message in node.published] == [
        event_subject("default", "order-1", "Happened"),
        event_subject("default", "order-1", "Happened"),
        event_subject("default", "invoice-7", "Happened"),
        event_subject("default", "order-1", "Happened"),
    ]
    assert view.hearing == 0, "no applied notices: the emitter reads the log"


async def test_an_event_is_published_once_logged_before_the_writer_applies_it(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    view.set_lease("node1")
    await following(emitter, node)
    await node.append("order-1", events=2, apply=False)
    await eventually(lambda: node.positions() == [1, 2], what="both events from the log")
    assert node.catalog.get("default").last_position() == 0, "nothing applied yet"


async def test_catching_up_then_following_the_log_publishes_each_event_once(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    await node.append("order-1", events=3)  # applied: read from LMDB
    await node.append("order-2", events=2, apply=False)  # logged only: from the log
    await node.append("order-3", apply=False)

    def writer_applies_meanwhile(store: str) -> None:
        # Between the emitter taking the applied sequence and reading the store, the writer
        # applies what was logged: the log tail then repeats what the store holds.
        node.apply_logged()

    node.opened = writer_applies_meanwhile
    view.set_lease("node1")
    await following(emitter, node)
    await node.append("order-4")
    await eventually(lambda: len(node.published) == 7, what="seven events published")
    await idle()
    assert node.positions() == [1, 2, 3, 4, 5, 6, 7]


async def test_losing_the_lease_checkpoints_and_the_next_leadership_resumes_after_it(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    await node.append("order-1", events=2)
    view.set_lease("node1")
    await eventually(lambda: len(node.published) == 2, what="the first two events")
    view.set_lease("node2")
    await eventually(lambda: emitter.fanout is None, what="the fan-out to stop")
    assert node.logged == [CheckpointOp("default", EMITTER_CHECKPOINT, 2)]
    assert node.flushed == 2, "a checkpoint never covers what NATS has not taken"
    assert read_checkpoint(node.catalog.system, "default", EMITTER_CHECKPOINT) == 2

    await node.append("order-3")
    view.set_lease("node1", run="run2")
    await eventually(lambda: len(node.published) == 3, what="the event after the checkpoint")
    assert node.positions() == [1, 2, 3]


async def test_checkpoints_are_logged_while_leading(
    node: Node, view: MemoryClusterView, emitter: Emitter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from esdb.services.emitter import fanout

    monkeypatch.setattr(fanout, "CHECKPOINT_EVERY_S", 0.01)
    view.set_lease("node1")
    await node.append("order-1", events=3)
    await eventually(
        lambda: read_checkpoint(node.catalog.system, "default", EMITTER_CHECKPOINT) == 3,
        what="a checkpoint at 3",
    )
    assert node.flushed >= 3
    assert node.positions() == [1, 2, 3], "its own checkpoint entries publish nothing"


async def test_a_store_created_while_leading_is_fanned_out_from_its_first_event(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    view.set_lease("node1")
    await following(emitter, node)
    await node.commit([CreateStoreOp("other")])
    await node.append("order-1", store="other")
    await eventually(lambda: node.positions("other") == [1], what="other's event published")
    assert emitter.stores == ["default", "other"]


async def test_creating_a_store_that_exists_changes_nothing(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    await node.append("order-1", events=2)
    view.set_lease("node1")
    await following(emitter, node)
    await node.commit([CreateStoreOp("default")])  # apply leaves an existing store alone
    await node.append("order-1")
    await eventually(lambda: node.positions() == [1, 2, 3], what="the third event")
    assert node.fanouts == 1


async def test_a_removed_store_publishes_nothing_more_and_its_namesake_starts_over(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    await node.commit([CreateStoreOp("other")])
    await node.append("order-1", events=2, store="other")
    view.set_lease("node1")
    await eventually(lambda: node.positions("other") == [1, 2], what="other's events")
    await node.commit([RemoveStoreOp("other")])
    await eventually(lambda: emitter.stores == ["default"], what="other's fan-out to stop")
    await node.commit([CreateStoreOp("other")])
    await node.append("order-1", store="other")
    await eventually(lambda: node.positions("other") == [1, 2, 1], what="the new other's event")
    await following(emitter, node)
    assert emitter.fanout is not None
    await emitter.fanout.save_checkpoints()
    assert read_checkpoint(node.catalog.system, "other", EMITTER_CHECKPOINT) == 1


async def test_an_append_removed_in_its_own_entry_is_not_published(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    await node.commit([CreateStoreOp("other")])
    view.set_lease("node1")
    await following(emitter, node)
    await node.commit([node.append_op("order-1", store="other"), RemoveStoreOp("other")])
    await node.append("order-2")
    await eventually(lambda: node.positions() == [1], what="the default store's event")
    assert node.positions("other") == []


async def test_a_gap_in_positions_stops_the_fanout_and_nothing_past_it_is_published(
    node: Node, view: MemoryClusterView, emitter: Emitter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "RESTART_S", 0.01)
    view.set_lease("node1")
    fanout = await following(emitter, node)
    await node.append("order-1")
    await eventually(lambda: node.positions() == [1], what="the first event")
    [good] = node.entries[-1].ops
    assert isinstance(good, AppendOp)
    skipping = AppendOp("default", "order-1", 1, 3, good.events)  # position 2 never comes
    started = node.fanouts
    await node.commit([skipping], apply=False)
    await eventually(lambda: node.fanouts >= started + 2, what="the fan-out to fail, twice")
    assert emitter.fanout is not fanout
    assert set(node.positions()) == {1}, "published again from the checkpoint, then stopped"
    assert node.tails_closed >= 2, "a failed fan-out's log consumer goes with it"


async def test_restored_events_are_published_and_appends_go_on_after_them(
    node: Node, view: MemoryClusterView, emitter: Emitter
) -> None:
    view.set_lease("node1")
    await following(emitter, node)
    started = node.fanouts
    stamped = [
        StampedEvent(event_id(), "Happened", b'{"n":1}', b"", "application/json", NOW_US)
        for _ in range(2)
    ]
    await node.commit(
        [
            RestoreStreamOp("default", "order-9", 20, 1, stamped, 21, "active", {}),
            RestoreStreamOp("default", "gone-1", 24, 0, [], 24, "deleted", {}),
        ],
        apply=False,  # from the log itself, not a catch-up from LMDB
    )
    node._heads["default"] = ({"order-9": 21}, 2)
    await node.append("order-1", apply=False)
    await eventually(lambda: node.positions() == [1, 2, 3], what="restored, then appended")
    assert node.fanouts == started, "no gap: the fan-out never started over"
    assert [m.subject for m in node.published[:2]] == [
        event_subject("default", "order-9", "Happened")
    ] * 2


async def test_a_corrupt_log_entry_is_never_skipped(
    node: Node, view: MemoryClusterView, emitter: Emitter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "RESTART_S", 0.01)
    view.set_lease("node1")
    await following(emitter, node)
    node.entries.append(LogEntry(ops=[]))
    await node.log.append(b"\xc1 not msgpack", expected_last=len(node.entries) - 1)
    started = node.fanouts
    await node.append("order-1", apply=False)
    await eventually(lambda: node.fanouts >= started + 2, what="the fan-out to fail, twice")
    assert node.published == []


async def test_the_log_tail_must_not_skip_an_entry(node: Node) -> None:
    fanout = node.fanout()
    fanout.sequence = 1
    await fanout.emit_entry(1, b"")  # at or below: ignored
    with pytest.raises(FanoutError, match="log entry 3 follows 1"):
        await fanout.emit_entry(3, encode_entry(LogEntry(ops=[])))


async def test_a_failed_fanout_starts_again_from_the_checkpoints(
    node: Node, view: MemoryClusterView, emitter: Emitter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "RESTART_S", 0.01)
    await node.append("order-1", events=2)
    view.set_lease("node1")
    await following(emitter, node)
    node.failing_sends = 1
    await node.append("order-2")  # its send fails; the fan-out starts over
    await eventually(lambda: node.positions() == [1, 2, 3], what="the lost event, again")
    assert node.fanouts == 2
    assert node.logged == [CheckpointOp("default", EMITTER_CHECKPOINT, 2)], (
        "the failed fan-out checkpointed what NATS took, and not the event it could not send"
    )
