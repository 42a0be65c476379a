"""The projection service's NATS side: a batch's commit goes to the writer leader as one
write, its emitted appends and its `ProjectionCommitOp` together in one log entry."""

from __future__ import annotations

import msgspec
from nats.aio.client import Client as NatsClient

from esdb.contracts.commands import StreamAppend, WriteBatch, WriteBatchReply, WriteRequest
from esdb.contracts.errors import error_from_body
from esdb.contracts.log import ProjectionCommitOp
from esdb.contracts.subjects import WRITER_COMMANDS
from esdb.shared.writer_ops import ask_leader

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
        reply = await ask_leader(self._nc, WRITER_COMMANDS, payload, self._timeout_s)
        (outcome,) = _reply.decode(reply).outcomes
        if outcome.error is not None:
            raise error_from_body(outcome.error)
