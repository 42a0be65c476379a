"""The projection service's NATS side: a batch's commit goes to the writer leader as one
write, its emitted appends and its `ProjectionCommitOp` together in one log entry."""

from __future__ import annotations

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient

from esdb.contracts.commands import StreamAppend, WriteBatch, WriteBatchReply, WriteRequest
from esdb.contracts.errors import Timeout, Unavailable, error_from_body
from esdb.contracts.log import ProjectionCommitOp
from esdb.contracts.subjects import WRITER_COMMANDS

_encoder = msgspec.msgpack.Encoder()
_reply = msgspec.msgpack.Decoder(WriteBatchReply)


class WriterCommits:
    """Sends commits to the writer leader; raises `EsdbError` when one does not land."""

    def __init__(self, nc: NatsClient, timeout_s: float) -> None:
        self._nc = nc
        self._timeout_s = timeout_s

    async def __call__(
        self, store: str, appends: list[StreamAppend], op: ProjectionCommitOp
    ) -> None:
        request = WriteRequest(store, appends, projection=op)
        payload = _encoder.encode(WriteBatch([request]))
        try:
            reply = await self._nc.request(WRITER_COMMANDS, payload, timeout=self._timeout_s)
        except nats.errors.NoRespondersError as e:
            raise Unavailable("no writer leader; retry") from e
        except nats.errors.TimeoutError as e:
            raise Timeout("the writer leader did not answer in time") from e
        (outcome,) = _reply.decode(reply.data).outcomes
        if outcome.error is not None:
            raise error_from_body(outcome.error)
