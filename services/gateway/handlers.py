"""The gateway's NATS side: each request to the core, each reply (or typed error) back,
counted and traced; and the NATS implementations of the core's ports."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from opentelemetry.trace import Span, SpanKind

from esdb.contracts.commands import WriteOutcome
from esdb.contracts.errors import EsdbError, InternalError
from esdb.contracts.subjects import Op
from esdb.services.gateway.orphans import OrphanWatch
from esdb.services.gateway.ports import Ask, Publish, Unanswered, Unheard
from esdb.services.gateway.service import GatewayService, is_write
from esdb.shared.metrics import RequestMetrics
from esdb.shared.requests import target
from esdb.shared.telemetry import Telemetry
from esdb.shared.tracing import child_span, end_span, incoming
from esdb.shared.wire import Codec, codec_of, encode_error
from esdb.shared.writes import write_reply

log = logging.getLogger(__name__)
OPERATIONS = tuple(value for name, value in vars(Op).items() if name.isupper())


class GatewayHandlers:
    """Subscription callbacks of the public API and of the copies of writes."""

    def __init__(
        self, nc: NatsClient, core: GatewayService, orphans: OrphanWatch, telemetry: Telemetry
    ) -> None:
        self._nc = nc
        self._core = core
        self._orphans = orphans
        self._tracer = telemetry.tracer
        self._metrics = RequestMetrics(telemetry.registry, OPERATIONS)
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_request(self, msg: Msg) -> None:
        """The API subscription's callback. nats-py awaits it once per message, in order, so
        writes are validated right here and queued for the leader (no task per write); every
        other operation answers in a task of its own."""
        started = time.perf_counter()
        codec = codec_of(msg.headers, msg.data)
        operation = msg.subject.rpartition(".")[2]
        span = None
        if self._tracer is not None:
            span = child_span(
                self._tracer,
                f"gateway {operation}",
                incoming(msg.headers),
                kind=SpanKind.SERVER,
                attributes={"messaging.destination.name": msg.subject},
            )
        try:
            store, operation = target(msg.subject)
            if is_write(store, operation):
                answer = partial(self._answer_write, msg, codec, operation, started, span)
                self._core.submit_write(store, operation, msg.data, codec, answer, span)
                return
        except EsdbError as e:
            await self._reply(msg, encode_error(e, codec), operation, started, span, e.code.value)
            return
        except Exception:
            await self._internal_error(msg, codec, operation, started, span)
            return
        task = asyncio.create_task(self._handle(msg, store, operation, codec, started, span))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_write_copy(self, msg: Msg) -> None:
        """The copy of a write the servers routed to the leader (`orphans.py`)."""
        if msg.reply:
            self._orphans.remember(msg.reply, msg.data, codec_of(msg.headers, msg.data))

    async def _handle(
        self,
        msg: Msg,
        store: str,
        operation: str,
        codec: Codec,
        started: float,
        span: Span | None,
    ) -> None:
        """Answer one read or system request; every failure becomes a typed error reply."""
        try:
            reply = await self._core.answer(store, operation, msg.data, codec, span)
        except EsdbError as e:
            await self._reply(msg, encode_error(e, codec), operation, started, span, e.code.value)
        except Exception:
            await self._internal_error(msg, codec, operation, started, span)
        else:
            await self._reply(msg, reply, operation, started, span)

    async def _internal_error(
        self, msg: Msg, codec: Codec, operation: str, started: float, span: Span | None
    ) -> None:
        log.exception("unexpected error on %s", msg.subject)
        error = InternalError("internal error; see the gateway log")
        code = error.code.value
        await self._reply(msg, encode_error(error, codec), operation, started, span, code)

    async def _reply(
        self,
        msg: Msg,
        reply: bytes,
        operation: str,
        started: float,
        span: Span | None,
        code: str | None = None,
    ) -> None:
        """Send `reply`; count it (with its error code), and end the request's span."""
        try:
            if msg.reply:
                # No headers: a reply is in the codec of its request, which the caller knows.
                await self._nc.publish(msg.reply, reply)
        finally:
            self._metrics.answered(operation, time.perf_counter() - started, code)
            end_span(span, code)

    async def _answer_write(
        self,
        msg: Msg,
        codec: Codec,
        operation: str,
        started: float,
        span: Span | None,
        outcome: WriteOutcome,
    ) -> None:
        reply, code = write_reply(operation, outcome, codec)
        await self._reply(msg, reply, operation, started, span, code)


def nats_ask(nc: NatsClient) -> Ask:
    """Request-reply over `nc`, its errors translated to the port's."""

    async def ask(
        subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None
    ) -> bytes:
        try:
            reply = await nc.request(subject, payload, timeout=timeout, headers=headers)
        except NoRespondersError as e:
            raise Unheard(subject) from e
        except NatsTimeout as e:
            raise Unanswered(subject) from e
        return bytes(reply.data)

    return ask


def nats_publish(nc: NatsClient) -> Publish:
    """Publishing over `nc`."""

    async def publish(subject: str, payload: bytes) -> None:
        await nc.publish(subject, payload)

    return publish
