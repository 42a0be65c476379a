"""Public operations: decode, validate, route to the writer leader or a reader, encode."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from esdb.contracts import api
from esdb.contracts.api import (
    AppendMultiResult,
    ClusterStatus,
    Health,
    LogState,
    NodeStatus,
    ReplicaState,
)
from esdb.contracts.commands import WriteOutcome
from esdb.contracts.errors import (
    EsdbError,
    InternalError,
    InvalidRequest,
    Timeout,
    TooLarge,
    Unavailable,
    error_from_body,
)
from esdb.contracts.subjects import LOG_STREAM, NODE_STATUS, SYSTEM_STORE, Op, reader_subject
from esdb.services.gateway import validation
from esdb.services.gateway.coalescer import WriteCoalescer
from esdb.services.gateway.consistency import consistency_problems
from esdb.shared.settings import Settings
from esdb.shared.wire import Codec, codec_of, content_type_of, decode_request, encode, encode_error

log = logging.getLogger(__name__)
_internal = msgspec.msgpack.Encoder()
_node_status = msgspec.msgpack.Decoder(NodeStatus)

Handler = Callable[[str, bytes, Codec], Awaitable[bytes]]


class Gateway:
    """Routes `esdb.api.<store>.<operation>` requests; stateless, so any number can run."""

    def __init__(self, nc: NatsClient, settings: Settings) -> None:
        self._nc = nc
        self._settings = settings
        self._writes = WriteCoalescer(nc)
        self._js = nc.jetstream(timeout=1.0)
        self._store_ops: dict[str, Handler] = {
            Op.APPEND: self.append,
            Op.APPEND_MULTI: self.append_multi,
            Op.READ_STREAM: self._reader(
                api.ReadStreamRequest, validation.stream_query, Op.READ_STREAM
            ),
            Op.READ_ALL: self._reader(api.ReadAllRequest, validation.all_query, Op.READ_ALL),
            Op.LIST_STREAMS: self._reader(
                api.ListStreamsRequest, validation.list_query, Op.LIST_STREAMS
            ),
            Op.STREAM_INFO: self._reader(
                api.StreamInfoRequest, validation.info_query, Op.STREAM_INFO
            ),
        }
        self._system_ops: dict[str, Callable[[], Awaitable[msgspec.Struct]]] = {
            Op.HEALTH: self.health,
            Op.CLUSTER_STATUS: self.cluster_status,
        }

    async def handle(self, msg: Msg) -> None:
        """Answer one public request; every failure becomes a typed error reply."""
        codec = codec_of(msg.headers)
        try:
            reply = await self._dispatch(msg.subject, msg.data, codec)
        except EsdbError as e:
            reply = encode_error(e, codec)
        except Exception:
            log.exception("unexpected error on %s", msg.subject)
            reply = encode_error(InternalError("internal error; see the gateway log"), codec)
        if msg.reply:
            await self._nc.publish(
                msg.reply, reply, headers={"Content-Type": content_type_of(codec)}
            )

    async def _dispatch(self, subject: str, data: bytes, codec: Codec) -> bytes:
        tokens = subject.split(".")
        if len(tokens) != 4:
            raise InvalidRequest(
                f"subject {subject!r} is not esdb.api.<store>.<operation>", field="subject"
            )
        store, operation = tokens[2], tokens[3]
        if store == SYSTEM_STORE:
            system_op = self._system_ops.get(operation)
            if system_op is None:
                raise InvalidRequest(f"unknown system operation {operation!r}", field="operation")
            return encode(await system_op(), codec)
        handler = self._store_ops.get(operation)
        if handler is None:
            raise InvalidRequest(f"unknown operation {operation!r}", field="operation")
        validation.check_store(store)
        if len(data) > self._settings.max_request_bytes:
            raise TooLarge(
                f"request is {len(data)} bytes; the limit is {self._settings.max_request_bytes}",
                field="body",
                limit=self._settings.max_request_bytes,
            )
        return await handler(store, data, codec)

    def _timeout(self, timeout_ms: int | None) -> float:
        return (timeout_ms or self._settings.timeout_ms) / 1000

    async def append(self, store: str, data: bytes, codec: Codec) -> bytes:
        """`append`: one stream, optimistic concurrency, idempotent by event id."""
        request = decode_request(data, api.AppendRequest, codec)
        command = validation.append_command(store, request, codec, self._settings)
        outcome = await self._writes.submit(command, self._timeout(request.timeout_ms))
        return encode(_results(outcome)[0], codec)

    async def append_multi(self, store: str, data: bytes, codec: Codec) -> bytes:
        """`append_multi`: several streams, all or nothing."""
        request = decode_request(data, api.AppendMultiRequest, codec)
        command = validation.append_multi_command(store, request, codec, self._settings)
        outcome = await self._writes.submit(command, self._timeout(request.timeout_ms))
        return encode(AppendMultiResult(results=_results(outcome)), codec)

    def _reader(
        self,
        request_type: type[msgspec.Struct],
        to_query: Callable[..., msgspec.Struct],
        operation: str,
    ) -> Handler:
        async def handler(store: str, data: bytes, codec: Codec) -> bytes:
            request = decode_request(data, request_type, codec)
            query = to_query(store, request, codec, self._settings)
            # A min_position wait happens in the reader; give it time to answer after it.
            timeout = self._timeout(getattr(request, "timeout_ms", None)) + 1.0
            return await self._ask_reader(operation, _internal.encode(query), timeout)

        return handler

    async def _ask_reader(self, operation: str, payload: bytes, timeout: float) -> bytes:
        try:
            reply = await self._nc.request(reader_subject(operation), payload, timeout=timeout)
        except NoRespondersError as e:
            raise Unavailable("no reader is available; retry") from e
        except NatsTimeout as e:
            raise Timeout("the reader did not answer in time") from e
        return bytes(reply.data)  # already encoded for the client by the reader

    async def cluster_status(self) -> ClusterStatus:
        """Every writer node that answers within a short window, the log's replicas, and
        what the nodes disagree on."""
        nodes, log_state = await asyncio.gather(self._gather_nodes(0.5), self._log_state())
        nodes.sort(key=lambda n: n.node_id)
        leader = next((n.node_id for n in nodes if n.role == "leader"), None)
        problems = consistency_problems(nodes)
        return ClusterStatus(
            leader=leader,
            nodes=nodes,
            log=log_state,
            consistent=not problems,
            problems=problems,
        )

    async def _log_state(self) -> LogState | None:
        try:
            info = await self._js.stream_info(LOG_STREAM)
        except (nats.errors.Error, TimeoutError):
            return None
        cluster = info.cluster
        replicas = [
            ReplicaState(
                name=peer.name or "?",
                current=bool(peer.current),
                offline=bool(peer.offline),
                lag=peer.lag or 0,
            )
            for peer in (cluster.replicas or [] if cluster else [])
        ]
        return LogState(
            first_sequence=info.state.first_seq,
            last_sequence=info.state.last_seq,
            leader=cluster.leader if cluster else None,
            replicas=replicas,
        )

    async def health(self) -> Health:
        """`ok` when a leader takes writes and a reader answers, else `unavailable`."""
        status = await self.cluster_status()
        try:
            await self._nc.request(reader_subject("ping"), b"", timeout=1.0)
            readers = 1
        except (NoRespondersError, NatsTimeout):
            readers = 0
        ok = status.leader is not None and readers > 0
        return Health(status="ok" if ok else "unavailable", leader=status.leader, readers=readers)

    async def _gather_nodes(self, window: float) -> list[NodeStatus]:
        inbox = self._nc.new_inbox()
        replies: asyncio.Queue[Msg] = asyncio.Queue()

        async def collect(msg: Msg) -> None:
            await replies.put(msg)

        sub = await self._nc.subscribe(inbox, cb=collect)
        try:
            await self._nc.publish(NODE_STATUS, b"", reply=inbox)
            nodes: list[NodeStatus] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + window
            while (left := deadline - loop.time()) > 0:
                try:
                    msg = await asyncio.wait_for(replies.get(), left)
                except TimeoutError:
                    break
                if msg.data:  # an empty message is the server's "no responders" status
                    nodes.append(_node_status.decode(msg.data))
            return nodes
        finally:
            await sub.unsubscribe()


def _results(outcome: WriteOutcome) -> list[api.AppendResult]:
    if outcome.error is not None:
        raise error_from_body(outcome.error)
    if outcome.results is None:
        raise InternalError("the writer sent an empty outcome")
    return outcome.results
