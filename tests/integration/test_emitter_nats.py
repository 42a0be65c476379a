"""The emitter's NATS side on real nats-servers: its frames reach subscribers byte for byte as
`Client.publish` sent the same message, and over a JetStream log it publishes every committed
event once (from LMDB, then from the log, before the writer has applied it) and nothing the
log refused."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from esdb.contracts.api import JSON_CONTENT_TYPE
from esdb.contracts.log import (
    AppendOp,
    CreateStoreOp,
    LogEntry,
    LogOp,
    StampedEvent,
    encode_entry,
)
from esdb.contracts.topics import EVENTS_PREFIX, POSITION_HEADER, all_events_subject
from esdb.services.emitter.fanout import LogFanout
from esdb.services.emitter.messages import StoreMessages
from esdb.services.emitter.nats_ports import FramePublisher, log_tail
from esdb.services.writer.applier import Applier
from esdb.services.writer.log import FencedOut, JetStreamLog
from esdb.shared.storage.catalog import lmdb_catalog
from esdb.shared.storage.records import EventRecord
from tests.fanout_frames import MAX_PAYLOAD, reference
from tests.integration.conftest import NatsServer
from tests.stack import wait_until


def _event(
    stream: str, position: int, type_: str, data: bytes, meta: bytes, ct: str
) -> EventRecord:
    return EventRecord(
        uuid.uuid4().bytes,
        stream,
        position - 1,
        position,
        type_,
        data,
        meta,
        ct,
        1_700_000_000_000_000 + position % 1_000_000,
    )


VARIED = [
    _event("order-1", 1, "Placed", b'{"a":[1,"x"]}', b"", JSON_CONTENT_TYPE),
    _event("order-1", 2, "Paid", b"", '{"by":"ü"}'.encode(), JSON_CONTENT_TYPE),
    _event("blob", 3, "Raw", b"\x00\xff raw", b"\x01", "application/octet-stream"),
    _event("ünï.cödé-7 *>", 10**15, "T.y pe>", b"", b"", "text/plain"),
]


class RawSubscriber:
    """A subscriber speaking the NATS protocol itself, so what arrives is seen as bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, url: str, subject: str) -> RawSubscriber:
        host, port = url.removeprefix("nats://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"headers":true,"protocol":1}\r\n')
        writer.write(b"SUB %s 1\r\nPING\r\n" % subject.encode())
        while (line := await reader.readline()) != b"PONG\r\n":
            assert line.startswith(b"INFO "), line
        return cls(reader, writer)

    async def message(self) -> bytes:
        """The next HMSG, whole: its line, headers and payload."""
        async with asyncio.timeout(5):
            line = await self._reader.readline()
            while line.startswith((b"INFO ", b"PING")):  # the server's own news and pings
                if line.startswith(b"PING"):
                    self._writer.write(b"PONG\r\n")
                line = await self._reader.readline()
            assert line.startswith(b"HMSG "), line
            total = int(line.split()[-1])
            return line + await self._reader.readexactly(total + 2)

    def close(self) -> None:
        self._writer.close()


async def test_subscribers_get_the_frames_as_client_publish_sent_the_message(
    plain_nats_url: str,
) -> None:
    subscriber = await RawSubscriber.open(plain_nats_url, f"{EVENTS_PREFIX}.>")
    nc = await nats.connect(plain_nats_url)
    try:
        publisher = FramePublisher(nc)
        messages = StoreMessages("default", nc.max_payload)
        for record in VARIED:
            subject, payload, headers = reference("default", record)
            await nc.publish(subject, payload, headers=headers)
            before = await subscriber.message()
            frames: list[bytes] = []
            messages.record_frames([record], frames)
            await publisher.send(b"".join(frames))
            assert await subscriber.message() == before
    finally:
        await nc.close()
        subscriber.close()


def _append(stream: str, version: int, position: int, events: int) -> AppendOp:
    return AppendOp(
        "default",
        stream,
        version,
        position,
        [
            StampedEvent(uuid.uuid4().bytes, "Happened", b"{}", b"", JSON_CONTENT_TYPE, 7)
            for _ in range(events)
        ],
    )


@pytest.fixture
async def jetstream_url(jetstream_server: NatsServer) -> str:
    return jetstream_server.url


@contextlib.asynccontextmanager
async def running(run: Callable[[], Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
    """`run()` in a task for the span of the `with`."""
    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_over_a_jetstream_log_every_committed_event_is_published_once_and_no_other(
    jetstream_url: str, tmp_path: Path
) -> None:
    nc = await nats.connect(jetstream_url)
    js = nc.jetstream(timeout=5)
    log = await JetStreamLog.open(js, replicas=1, durability="fsync")
    catalog = lmdb_catalog(tmp_path)
    applier = Applier(catalog)
    received: list[Msg] = []

    async def collect(msg: Msg) -> None:
        received.append(msg)

    async def commit(ops: list[LogOp], *, apply: bool) -> int:
        raw = encode_entry(LogEntry(ops=ops))
        sequence = await log.append(raw, expected_last=await log.last_sequence())
        if apply:
            await applier.apply_raw(sequence, raw)
        return sequence

    checkpoints: list[LogOp] = []

    async def log_ops(ops: list[LogOp]) -> None:
        checkpoints.extend(ops)

    try:
        await nc.subscribe(all_events_subject("default"), cb=collect)
        await commit([CreateStoreOp("default")], apply=True)
        await commit([_append("a", 0, 1, 3)], apply=True)  # in LMDB when the fan-out starts
        await commit([_append("b", 0, 4, 2)], apply=False)  # only in the log
        with pytest.raises(FencedOut):  # a stale leader's entry: refused, never stored
            await log.append(encode_entry(LogEntry(ops=[_append("x", 0, 6, 1)])), expected_last=1)
        fanout = LogFanout(
            # The writer's own handles: LMDB opens an environment once per process.
            system=lambda: contextlib.nullcontext(catalog.system),
            stores=catalog.get,
            tail=partial(log_tail, js),
            send=FramePublisher(nc).send,
            flush=nc.flush,
            log_ops=log_ops,
            max_payload=MAX_PAYLOAD,
        )
        async with running(fanout.run):
            await commit([_append("a", 3, 6, 1)], apply=False)  # while it follows the log

            async def six() -> bool:
                return len(received) >= 6

            await wait_until(six, timeout=10, what="six events on the fan-out")
            await nc.flush()
        positions = [int((m.headers or {})[POSITION_HEADER]) for m in received]
        assert positions == [1, 2, 3, 4, 5, 6]
        assert [m.subject.split(".")[3] for m in received] == ["a", "a", "a", "b", "b", "a"]
        assert catalog.get("default").last_position() == 3, "4-6 came from the log alone"
    finally:
        catalog.close()
        await nc.close()
