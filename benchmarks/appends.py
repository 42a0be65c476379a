"""Append workloads: esdb's public `append` against JetStream publishes fenced per subject.

Both sides do the same thing an event-sourced application does: many clients, each appending
one event at a time to its own streams, each append conditional on the version it last saw.
esdb is driven with raw nats-py requests (no client library), so the server is what is measured.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)

from esdb.benchmarks.figures import LatencyLog
from esdb.contracts.api import MSGPACK_CONTENT_TYPE
from esdb.contracts.errors import ErrorBody
from esdb.contracts.subjects import Op, api_subject, leader_subject

JETSTREAM_STREAM = "BENCH_ES"
JETSTREAM_SUBJECTS = "bench.es.>"
EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
EVENT_TYPE = "OrderPlaced"
MSGPACK_HEADERS = {"Content-Type": MSGPACK_CONTENT_TYPE}


class BenchEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An event of an append request as a msgpack client sends it (`data` as raw bytes)."""

    type: str
    data: bytes


class AppendBody(msgspec.Struct, kw_only=True):
    """The msgpack body of `esdb.api.<store>.append`."""

    stream: str
    expected_version: int | str
    events: list[BenchEvent]


class AppendReply(msgspec.Struct, kw_only=True):
    """An append reply: the result fields, or `error`."""

    first_position: int = 0
    last_version: int = -1
    error: ErrorBody | None = None


_encode = msgspec.msgpack.Encoder().encode
_append_reply = msgspec.msgpack.Decoder(AppendReply)


def jetstream_run_subjects(run_id: str) -> str:
    """The subjects one benchmark run publishes to in the comparison stream."""
    return f"bench.es.{run_id}.>"


def event_payload(size: int = 160) -> bytes:
    """A JSON event body of about `size` bytes, like a small domain event."""
    base = {
        "order_id": "3f1c9a52-7d1e-4b8e-9a57-0c8d2f6b1e42",
        "customer": "customer-004217",
        "amount_cents": 12_990,
        "currency": "EUR",
        "note": "",
    }
    pad = max(0, size - len(msgspec.json.encode(base)))
    base["note"] = "x" * pad
    return msgspec.json.encode(base)


class PhaseSource(Protocol):
    """What an append phase takes from a bench run's plan."""

    @property
    def run_id(self) -> str: ...

    @property
    def clients(self) -> int: ...

    @property
    def stream_length(self) -> int: ...

    @property
    def timeout(self) -> float: ...


@dataclass(frozen=True)
class AppendPlan:
    """How many events, spread over how many concurrent clients and how long streams are."""

    run_id: str
    label: str
    events: int
    clients: int
    stream_length: int
    timeout: float

    @classmethod
    def for_phase(cls, plan: PhaseSource, label: str, events: int) -> AppendPlan:
        """The plan of one append phase of a bench run."""
        return cls(
            run_id=plan.run_id,
            label=label,
            events=events,
            clients=plan.clients,
            stream_length=plan.stream_length,
            timeout=plan.timeout,
        )

    def shares(self) -> list[int]:
        """Events per client: as even as possible, summing to `events`."""
        each, extra = divmod(self.events, self.clients)
        return [each + (1 if i < extra else 0) for i in range(self.clients)]


@dataclass
class AppendRun:
    """What one append workload produced: latencies, wall time, where its events start."""

    log: LatencyLog
    seconds: float
    first: int | None
    """The lowest global position (esdb) or stream sequence (JetStream) the run wrote."""
    last: int | None = None
    """The highest one."""


AppendOnce = Callable[[int, int, int | None], Awaitable[tuple[int, int]]]
"""(client, stream number, fence or None for a new stream) -> (next fence, where it landed).

The fence is what the next append to the stream must expect: esdb's stream version, or the
JetStream sequence of the subject's last message. Where it landed is the global position
(esdb) or the stream sequence (JetStream)."""


class AppendFailed(Exception):
    """One append did not land; `code` names why (an esdb error code or a NATS condition)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


async def drive(plan: AppendPlan, append_once: AppendOnce, progress: Progress) -> AppendRun:
    """Run `plan.clients` workers, each appending its share one event at a time.

    A worker moves to a fresh stream when its stream is full, and also after a failed append:
    the failed event's outcome is unknown, so its next fence would be a guess."""
    log = LatencyLog()
    firsts: list[int] = []
    lasts: list[int] = []

    async def client(index: int, share: int) -> None:
        stream_no, fence, filled, lowest, highest = 0, None, 0, 0, 0
        for _ in range(share):
            if filled == plan.stream_length:
                stream_no, fence, filled = stream_no + 1, None, 0
            started = time.perf_counter()
            try:
                fence, where = await append_once(index, stream_no, fence)
            except AppendFailed as e:
                log.failed(e.code)
                stream_no, fence, filled = stream_no + 1, None, 0
                continue
            log.ok(time.perf_counter() - started)
            filled += 1
            progress.done += 1
            lowest = where if not lowest else min(lowest, where)
            highest = max(highest, where)
        if lowest:
            firsts.append(lowest)
            lasts.append(highest)

    started = time.perf_counter()
    await asyncio.gather(*(client(i, n) for i, n in enumerate(plan.shares())))
    seconds = time.perf_counter() - started
    return AppendRun(
        log=log,
        seconds=seconds,
        first=min(firsts) if firsts else None,
        last=max(lasts) if lasts else None,
    )


class Progress:
    """Events done so far, printed now and then by `report_progress`."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.done = 0


def client_append_subject(store: str) -> str:
    """Where the Python client sends an append: straight to the writer leader
    (`esdb.leader.<store>.append`), which no gateway copies, since the client hears leader
    changes itself."""
    subject = leader_subject(api_subject(store, Op.APPEND))
    assert subject is not None
    return subject


async def esdb_appends(
    nc: NatsClient, store: str, plan: AppendPlan, payload: bytes, progress: Progress
) -> AppendRun:
    """`plan` against esdb: one msgpack `append` request per event, exact expected version,
    sent as the Python client sends it (`client_append_subject`)."""
    subject = client_append_subject(store)

    async def append_once(client: int, stream_no: int, fence: int | None) -> tuple[int, int]:
        body = AppendBody(
            stream=f"bench-{plan.run_id}_{plan.label}_{client}_{stream_no}",
            expected_version="no_stream" if fence is None else fence,
            events=[BenchEvent(type=EVENT_TYPE, data=payload)],
        )
        try:
            # msgpack, known by its first byte: no header, as the Python client sends it
            reply = await nc.request(subject, _encode(body), timeout=plan.timeout)
        except nats.errors.TimeoutError as e:
            raise AppendFailed("nats_timeout") from e
        except nats.errors.NoRespondersError as e:
            raise AppendFailed("no_responders") from e
        result = _append_reply.decode(reply.data)
        if result.error is not None:
            raise AppendFailed(result.error.code)
        return result.last_version, result.first_position

    return await drive(plan, append_once, progress)


async def ensure_jetstream_stream(
    js: JetStreamContext, durability: str, replicas: int = 1
) -> StreamInfo:
    """Create the comparison stream (file storage unless `memory`, `replicas` copies), or
    bring an existing one to `replicas`; its info."""
    storage = StorageType.MEMORY if durability == "memory" else StorageType.FILE
    try:
        info = await js.stream_info(JETSTREAM_STREAM)
    except nats.js.errors.NotFoundError:
        return await js.add_stream(
            StreamConfig(
                name=JETSTREAM_STREAM,
                subjects=[JETSTREAM_SUBJECTS],
                storage=storage,
                num_replicas=replicas,
                retention=RetentionPolicy.LIMITS,
                discard=DiscardPolicy.OLD,
            )
        )
    if info.config.num_replicas != replicas:
        info = await js.update_stream(dataclasses.replace(info.config, num_replicas=replicas))
    return info


async def jetstream_appends(
    js: JetStreamContext, plan: AppendPlan, payload: bytes, progress: Progress
) -> AppendRun:
    """`plan` against JetStream: one publish per event, fenced on its subject's last sequence.

    A subject is a stream; the fence a client sends is the sequence its previous publish to
    that subject got (0: the subject must be empty)."""

    async def append_once(client: int, stream_no: int, fence: int | None) -> tuple[int, int]:
        expected = 0 if fence is None else fence
        try:
            ack = await js.publish(
                f"{jetstream_run_subjects(plan.run_id)[:-1]}{plan.label}.{client}.{stream_no}",
                payload,
                timeout=plan.timeout,
                headers={EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected), "Event-Type": EVENT_TYPE},
            )
        except nats.js.errors.APIError as e:
            raise AppendFailed(f"jetstream_{e.err_code}") from e
        except nats.errors.TimeoutError as e:
            raise AppendFailed("nats_timeout") from e
        sequence = int(ack.seq)
        return sequence, sequence

    return await drive(plan, append_once, progress)


async def report_progress(progress: Progress, every: float, write: Callable[[str], None]) -> None:
    """Print `progress` every `every` seconds until cancelled."""
    started = time.perf_counter()
    while True:
        await asyncio.sleep(every)
        elapsed = time.perf_counter() - started
        rate = progress.done / elapsed if elapsed > 0 else 0.0
        write(f"  {progress.label}: {progress.done}/{progress.total} events, {rate:,.0f}/s")
