"""Coalesces concurrent writes into few messages to the writer leader."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec
from opentelemetry.trace import Span, SpanKind, Tracer

from esdb.contracts.commands import WriteBatch, WriteBatchReply, WriteOutcome, WriteRequest
from esdb.contracts.errors import EsdbError, InternalError, Timeout, Unavailable
from esdb.contracts.subjects import WRITER_COMMANDS
from esdb.services.gateway.ports import Ask, Unanswered, Unheard
from esdb.shared.tracing import batch_span, outgoing

log = logging.getLogger(__name__)
_encoder = msgspec.msgpack.Encoder()
_reply_decoder = msgspec.msgpack.Decoder(WriteBatchReply)

Reply = Callable[[WriteOutcome], Awaitable[None]]
_Pending = tuple[WriteRequest, float, Reply, Span | None]


class WriteCoalescer:
    """Sends whatever writes wait while earlier batches are in flight as one `WriteBatch`,
    and hands each write's outcome to its `reply` callback. No task or timer per write: the
    batch's request carries the deadline."""

    def __init__(
        self,
        ask: Ask,
        *,
        max_in_flight: int = 4,
        max_batch: int = 512,
        tracer: Tracer | None = None,
    ) -> None:
        self._ask = ask
        self._tracer = tracer
        self._slots = asyncio.Semaphore(max_in_flight)
        self._max_batch = max_batch
        self._pending: list[_Pending] = []
        self._flushing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._requests: set[asyncio.Future[Any]] = set()

    def leader_changed(self) -> None:
        """The lease moved (or its holder restarted): batches sent before cannot be answered
        by anyone, so answer them `timeout` now rather than at their deadline."""
        for request in self._requests:
            request.cancel()

    def submit(
        self, request: WriteRequest, timeout: float, reply: Reply, span: Span | None = None
    ) -> None:
        """Queue `request` for the leader; `reply` gets its outcome within about `timeout`.
        `span` is the request's, which the batch span carrying it links to."""
        self._pending.append((request, timeout, reply, span))
        if not self._flushing:
            self._flushing = True
            self._spawn(self._flush())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        try:
            while self._pending:
                await self._slots.acquire()
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                self._spawn(self._send(batch))
        finally:
            self._flushing = False

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            outcomes = await self._exchange(batch)
        finally:
            self._slots.release()
        for (_, _, reply, _), outcome in zip(batch, outcomes, strict=True):
            try:
                await reply(outcome)
            except Exception:
                log.exception("replying to a write failed")

    async def _exchange(self, batch: list[_Pending]) -> list[WriteOutcome]:
        try:
            payload = _encoder.encode(WriteBatch([request for request, _, _, _ in batch]))
        except (TypeError, ValueError, OverflowError) as e:  # never silence a whole batch
            log.exception("a write batch could not be encoded")
            return _all(batch, InternalError(f"the gateway could not encode a write: {e}"))
        timeout = max(t for _, t, _, _ in batch)
        span = None
        headers = None
        if self._tracer is not None:
            span = batch_span(
                self._tracer,
                "gateway write_batch",
                (s.get_span_context() for _, _, _, s in batch if s is not None),
                kind=SpanKind.CLIENT,
                attributes={"esdb.requests": len(batch)},
            )
            headers = outgoing(span)
        request = asyncio.ensure_future(self._ask(WRITER_COMMANDS, payload, timeout, headers))
        self._requests.add(request)
        try:
            reply = await request
            outcomes = _reply_decoder.decode(reply).outcomes
        except Unheard:
            unheard = Unavailable("no writer leader is available; retry", delivered=False)
            return _all(batch, unheard)
        except Unanswered:
            return _all(batch, Timeout("the writer did not answer in time"))
        except msgspec.DecodeError as e:
            return _all(batch, Unavailable(f"bad reply from the writer: {e}"))
        except asyncio.CancelledError:
            if not request.cancelled():
                raise  # the gateway itself is stopping
            return _all(batch, Timeout("the writer leader changed; the outcome is unknown"))
        finally:
            self._requests.discard(request)
            if span is not None:
                span.end()
        if len(outcomes) != len(batch):
            error = outcomes[0].error if outcomes else None
            return _all(batch, Unavailable(error.message if error else "bad writer reply"))
        return outcomes


def _all(batch: list[_Pending], error: EsdbError) -> list[WriteOutcome]:
    return [WriteOutcome(error=error.to_body()) for _ in batch]
