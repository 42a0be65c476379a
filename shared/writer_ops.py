"""Node-local services log their own ops (checkpoints, subscriptions) through the leader."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient

from esdb.contracts.commands import OpsCommand, WriteOutcome
from esdb.contracts.errors import Timeout, Unavailable, error_from_body
from esdb.contracts.log import LogOp
from esdb.contracts.subjects import WRITER_OPS

LogOps = Callable[[list[LogOp]], Awaitable[None]]
"""Logs ops in one entry through the writer leader; raises `EsdbError`."""
_encoder = msgspec.msgpack.Encoder()
_outcome = msgspec.msgpack.Decoder(WriteOutcome)


async def ask_leader(nc: NatsClient, subject: str, payload: bytes, timeout: float) -> bytes:
    """Send `payload` to the writer leader on `subject`; its reply, or `Unavailable` when no
    leader listens and `Timeout` when it does not answer in time."""
    try:
        reply = await nc.request(subject, payload, timeout=timeout)
    except nats.errors.NoRespondersError as e:
        raise Unavailable("no writer leader; retry") from e
    except nats.errors.TimeoutError as e:
        raise Timeout("the writer leader did not answer in time") from e
    return bytes(reply.data)


async def submit_ops(nc: NatsClient, ops: list[LogOp], timeout: float = 5.0) -> None:
    """Log `ops` in one entry; returns once the leader committed it, raises `EsdbError`."""
    reply = await ask_leader(nc, WRITER_OPS, _encoder.encode(OpsCommand(ops)), timeout)
    outcome = _outcome.decode(reply)
    if outcome.error is not None:
        raise error_from_body(outcome.error)
