"""Read workloads: esdb's `read_all` in pages against a JetStream ordered consumer."""

from __future__ import annotations

import asyncio
import time

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from esdb.benchmarks.appends import JETSTREAM_STREAM
from esdb.benchmarks.figures import ReadFigures, read_figures
from esdb.contracts.errors import ErrorBody
from esdb.contracts.subjects import Op, api_subject


class ReadAllBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The msgpack body of `esdb.api.<store>.read_all`."""

    from_position: int
    limit: int
    direction: str = "forward"
    min_position: int | None = None


class ReadEvent(msgspec.Struct, kw_only=True):
    """The fields of a read event a consumer typically uses (the others are skipped)."""

    event_id: str
    stream_id: str
    version: int
    position: int
    event_type: str
    data: bytes


class ReadAllReply(msgspec.Struct, kw_only=True):
    """A `read_all` page, or `error`."""

    events: list[ReadEvent] = msgspec.field(default_factory=list)
    next_position: int | None = None
    error: ErrorBody | None = None


_encode = msgspec.msgpack.Encoder().encode
_read_reply = msgspec.msgpack.Decoder(ReadAllReply)


class ReadFailed(RuntimeError):
    """A read benchmark could not read what was written."""


async def esdb_read_all(
    nc: NatsClient,
    store: str,
    *,
    start: int,
    events: int,
    page: int,
    timeout: float,
    min_position: int | None = None,
) -> ReadFigures:
    """Read `$all` from `start` in pages of `page`, one request at a time, until `events`
    events arrived (or the log ended); every page is decoded as a client would.

    `min_position` (the last position written) goes with the first request, so a reader on a
    node that has not applied everything yet waits for it instead of ending the read early."""
    subject = api_subject(store, Op.READ_ALL)
    position: int | None = start
    received = 0
    wait_for = min_position
    started = time.perf_counter()
    while received < events and position is not None:
        body = _encode(ReadAllBody(from_position=position, limit=page, min_position=wait_for))
        wait_for = None
        try:
            # msgpack, known by its first byte: no header, as the Python client sends it
            reply = await nc.request(subject, body, timeout=timeout)
        except nats.errors.TimeoutError as e:
            raise ReadFailed(f"read_all from {position} timed out after {timeout} s") from e
        result = _read_reply.decode(reply.data)
        if result.error is not None:
            raise ReadFailed(f"read_all from {position}: {result.error.code}")
        received += len(result.events)
        position = result.next_position
    return read_figures("esdb read_all", received, time.perf_counter() - started)


async def jetstream_ordered_read(
    js: JetStreamContext, subjects: str, *, start: int, events: int, timeout: float
) -> ReadFigures:
    """Consume the benchmark stream from sequence `start` with an ordered consumer until
    `events` messages matching `subjects` arrived."""
    received = 0
    finished = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        nonlocal received
        received += 1
        if received >= events:
            finished.set()

    started = time.perf_counter()
    subscription = await js.subscribe(
        subjects,
        stream=JETSTREAM_STREAM,
        ordered_consumer=True,
        cb=on_message,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start),
    )
    try:
        await asyncio.wait_for(finished.wait(), timeout)
    except TimeoutError as e:
        raise ReadFailed(
            f"the ordered consumer got {received} of {events} messages in {timeout} s"
        ) from e
    finally:
        seconds = time.perf_counter() - started
        await subscription.unsubscribe()
    return read_figures("jetstream ordered consumer", received, seconds)
