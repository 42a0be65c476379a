"""The leader's public write endpoint: writes the servers route straight to it, no gateway."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry.trace import Span, SpanKind, Tracer

from esdb.contracts.commands import WriteOutcome
from esdb.contracts.errors import EsdbError, InternalError, InvalidRequest
from esdb.contracts.subjects import LEADER_PREFIX, SYSTEM_STORE, WRITE_OPERATIONS, WRITE_PREFIX
from esdb.services.writer.sequencer import Sequencer
from esdb.shared.metrics import RequestMetrics
from esdb.shared.requests import check_request, target
from esdb.shared.settings import Settings
from esdb.shared.tracing import child_span, end_span, incoming
from esdb.shared.wire import Codec, codec_of, encode_error
from esdb.shared.writes import write_command, write_reply

log = logging.getLogger(__name__)
PENDING_LIMIT = 65536


class Replies:
    """Write replies, queued as a batch is answered and published together: by the
    sequencer's `answered` hook right after the batch, or else by a task of their own."""

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._queued: list[tuple[str, bytes]] = []
        self._sender: asyncio.Task[None] | None = None

    def add(self, reply_to: str, reply: bytes) -> None:
        """Queue a reply (none when the request asked for none)."""
        if not reply_to:
            return
        self._queued.append((reply_to, reply))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_later())

    async def publish(self) -> None:
        """Publish every queued reply."""
        while self._queued:
            queued, self._queued = self._queued, []
            for reply_to, reply in queued:
                try:
                    # No headers: a reply is in the codec of its request.
                    await self._nc.publish(reply_to, reply)
                except Exception as e:
                    log.warning("cannot reply on %s: %s", reply_to, e)

    async def _send_later(self) -> None:
        try:
            await self.publish()
        finally:
            self._sender = None


class WriteFront:
    """Serves `esdb.write.<store>.<operation>` and `esdb.leader.<store>.<operation>` while
    this node leads: each request is validated in the subscription callback, queued on the
    sequencer, and answered on the client's own inbox once its entry is durable and applied
    (two NATS hops, not four)."""

    def __init__(
        self,
        nc: NatsClient,
        settings: Settings,
        sequencer: Sequencer,
        replies: Replies,
        metrics: RequestMetrics,
        tracer: Tracer | None = None,
    ) -> None:
        self._nc = nc
        self._settings = settings
        self._sequencer = sequencer
        self._replies = replies
        self._metrics = metrics
        self._tracer = tracer
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        """Take writes. A plain subscription, not a queue group: after a partition the other
        servers may keep a cut-off old leader's interest until their routes time out, and a
        queue group would send them a share of the writes, never to be answered (seen in the
        partition test). While two writers briefly both believe they lead, both see each
        write; the log's fence lets only one of their entries in. Writes come mapped from
        `esdb.api` (the gateways keep a copy) and straight on `esdb.leader` (no copy)."""
        self._subs = [
            await self._nc.subscribe(
                f"{prefix}.>", cb=self._on_request, pending_msgs_limit=PENDING_LIMIT
            )
            for prefix in (WRITE_PREFIX, LEADER_PREFIX)
        ]

    async def stop(self) -> None:
        """Take no more writes; those already queued are still answered."""
        subs, self._subs = self._subs, []
        for sub in subs:
            await sub.unsubscribe()

    async def _on_request(self, msg: Msg) -> None:
        started = time.perf_counter()
        codec = codec_of(msg.headers, msg.data)
        operation = msg.subject.rpartition(".")[2]
        span = self._span(msg, operation)
        try:
            store, operation = target(msg.subject)
            if store == SYSTEM_STORE or operation not in WRITE_OPERATIONS:
                raise InvalidRequest(f"unknown operation {operation!r}", field="operation")
            check_request(store, msg.data, self._settings)
            command, _ = write_command(store, operation, msg.data, codec, self._settings)
        except EsdbError as e:
            self._answered(msg.reply, encode_error(e, codec), operation, started, span, e)
            return
        except Exception:
            log.exception("unexpected error on %s", msg.subject)
            error = InternalError("internal error; see the writer log")
            self._answered(msg.reply, encode_error(error, codec), operation, started, span, error)
            return
        trace = None if span is None else span.get_span_context()
        answer = partial(self._on_outcome, msg.reply, operation, codec, started, span)
        self._sequencer.submit_with(command, answer, trace)

    def _span(self, msg: Msg, operation: str) -> Span | None:
        if self._tracer is None:
            return None
        return child_span(
            self._tracer,
            f"writer {operation}",
            incoming(msg.headers),
            kind=SpanKind.SERVER,
            attributes={"messaging.destination.name": msg.subject},
        )

    def _on_outcome(
        self,
        reply_to: str,
        operation: str,
        codec: Codec,
        started: float,
        span: Span | None,
        outcome: WriteOutcome,
    ) -> None:
        reply, code = write_reply(operation, outcome, codec)
        self._replies.add(reply_to, reply)
        self._metrics.answered(operation, time.perf_counter() - started, code)
        end_span(span, code)

    def _answered(
        self,
        reply_to: str,
        reply: bytes,
        operation: str,
        started: float,
        span: Span | None,
        error: EsdbError,
    ) -> None:
        self._replies.add(reply_to, reply)
        self._metrics.answered(operation, time.perf_counter() - started, error.code.value)
        end_span(span, error.code.value)
