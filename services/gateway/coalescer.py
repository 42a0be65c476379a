"""Coalesces concurrent writes into few messages to the writer leader."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from esdb.contracts.commands import WriteBatch, WriteBatchReply, WriteOutcome, WriteRequest
from esdb.contracts.errors import EsdbError, Timeout, Unavailable
from esdb.contracts.subjects import WRITER_COMMANDS

_encoder = msgspec.msgpack.Encoder()
_reply_decoder = msgspec.msgpack.Decoder(WriteBatchReply)


class WriteCoalescer:
    """Sends whatever writes wait while earlier batches are in flight as one `WriteBatch`."""

    def __init__(self, nc: NatsClient, *, max_in_flight: int = 2, max_batch: int = 512) -> None:
        self._nc = nc
        self._slots = asyncio.Semaphore(max_in_flight)
        self._max_batch = max_batch
        self._pending: list[tuple[WriteRequest, float, asyncio.Future[WriteOutcome]]] = []
        self._flushing = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, request: WriteRequest, timeout: float) -> WriteOutcome:
        """Send `request` to the leader (batched with others) and wait for its outcome."""
        future: asyncio.Future[WriteOutcome] = asyncio.get_running_loop().create_future()
        self._pending.append((request, timeout, future))
        if not self._flushing:
            self._flushing = True
            self._spawn(self._flush())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return WriteOutcome(error=Timeout("the write did not complete in time").to_body())

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

    async def _send(
        self, batch: list[tuple[WriteRequest, float, asyncio.Future[WriteOutcome]]]
    ) -> None:
        try:
            payload = _encoder.encode(WriteBatch([request for request, _, _ in batch]))
            timeout = max(t for _, t, _ in batch)
            try:
                reply = await self._nc.request(WRITER_COMMANDS, payload, timeout=timeout)
                outcomes = _reply_decoder.decode(reply.data).outcomes
                if len(outcomes) != len(batch):
                    raise Unavailable(
                        outcomes[0].error.message if outcomes and outcomes[0].error else "bad reply"
                    )
            except NoRespondersError:
                outcomes = _all(batch, Unavailable("no writer leader is available; retry"))
            except NatsTimeout:
                outcomes = _all(batch, Timeout("the writer did not answer in time"))
            except EsdbError as e:
                outcomes = _all(batch, e)
            for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)
        finally:
            self._slots.release()


def _all(
    batch: list[tuple[WriteRequest, float, asyncio.Future[WriteOutcome]]], error: EsdbError
) -> list[WriteOutcome]:
    return [WriteOutcome(error=error.to_body()) for _ in batch]
