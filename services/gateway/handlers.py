"""Public operations: decode, validate, route to the writer leader or a reader, encode."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from opentelemetry.trace import Span, SpanKind

from esdb.contracts import api
from esdb.contracts.api import (
    ClusterStatus,
    Health,
    LogState,
    MemberState,
    NodeStatus,
    ReplicaState,
)
from esdb.contracts.commands import WriteBatch, WriteOutcome, WriteRequest
from esdb.contracts.errors import (
    EsdbError,
    InternalError,
    InvalidRequest,
    Timeout,
    Unavailable,
)
from esdb.contracts.subjects import (
    FORWARDED_OPERATIONS,
    LEASE_BUCKET,
    LEASE_KEY,
    LOG_STREAM,
    MEMBERS_BUCKET,
    NODE_STATUS,
    SYSTEM_STORE,
    WRITE_OPERATIONS,
    WRITER_COMMANDS,
    Op,
    reader_subject,
    service_subject,
)
from esdb.services.gateway.cluster_admin import ClusterAdmin
from esdb.services.gateway.coalescer import WriteCoalescer
from esdb.services.gateway.consistency import consistency_problems
from esdb.services.gateway.orphans import OrphanWatch
from esdb.services.gateway.store_admin import StoreAdmin
from esdb.shared import validation
from esdb.shared.membership import Member, all_members
from esdb.shared.metrics import RequestMetrics
from esdb.shared.nats_connection import gather_replies
from esdb.shared.settings import Settings
from esdb.shared.telemetry import Telemetry, nats_problem
from esdb.shared.tracing import child_span, end_span, incoming, outgoing
from esdb.shared.wire import (
    Codec,
    codec_of,
    content_type_of,
    decode_request,
    encode,
    encode_error,
)
from esdb.shared.writes import check_request, target, write_command, write_reply

log = logging.getLogger(__name__)
_internal = msgspec.msgpack.Encoder()
_node_status = msgspec.msgpack.Decoder(NodeStatus)
_LEADER_PING = _internal.encode(WriteBatch([]))
"""An empty batch: the writer leader answers it at once with no outcomes."""
PROBE_TIMEOUT_S = 1.0

Handler = Callable[[str, bytes, Codec, Span | None], Awaitable[bytes]]
OPERATIONS = tuple(value for name, value in vars(Op).items() if name.isupper())


class Gateway:
    """Routes `esdb.api.<store>.<operation>` requests; stateless, so any number can run."""

    def __init__(self, nc: NatsClient, settings: Settings, telemetry: Telemetry) -> None:
        self._nc = nc
        self._settings = settings
        self._tracer = telemetry.tracer
        self._metrics = RequestMetrics(telemetry.registry, OPERATIONS)
        self._writes = WriteCoalescer(nc, tracer=telemetry.tracer)
        self.orphans = OrphanWatch(nc, settings)
        self._js = nc.jetstream(timeout=1.0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._store_ops: dict[str, Handler] = {
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
        self._stores = StoreAdmin(self._write, self._ask_reader, settings)
        self._cluster = ClusterAdmin(nc, settings, lambda: self._gather_nodes(0.5))
        self._system_ops: dict[str, Callable[[], Awaitable[msgspec.Struct]]] = {
            Op.HEALTH: self.health,
            Op.CLUSTER_STATUS: self.cluster_status,
        }

    async def on_request(self, msg: Msg) -> None:
        """The subscription callback. nats-py awaits it once per message, in order, so writes
        are validated right here and queued for the leader (no task per write); every other
        operation answers in a task of its own."""
        started = time.perf_counter()
        codec = codec_of(msg.headers)
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
            if store != SYSTEM_STORE and operation in WRITE_OPERATIONS:
                self._check_request(store, msg.data)
                command, timeout = self._write_command(store, operation, msg.data, codec)
                answer = partial(self._answer_write, msg, codec, operation, started, span)
                self._writes.submit(command, timeout, answer, span)
                return
        except EsdbError as e:
            await self._reply(msg, encode_error(e, codec), operation, started, span, e.code.value)
            return
        except Exception:
            log.exception("unexpected error on %s", msg.subject)
            error = InternalError("internal error; see the gateway log")
            reply = encode_error(error, codec)
            await self._reply(msg, reply, operation, started, span, error.code.value)
            return
        task = asyncio.create_task(self.handle(msg, store, operation, codec, started, span))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(
        self,
        msg: Msg,
        store: str,
        operation: str,
        codec: Codec,
        started: float,
        span: Span | None = None,
    ) -> None:
        """Answer one read or system request; every failure becomes a typed error reply."""
        error: EsdbError | None = None
        try:
            reply = await self._dispatch(store, operation, msg.data, codec, span)
        except EsdbError as e:
            error = e
            reply = encode_error(e, codec)
        except Exception:
            log.exception("unexpected error on %s", msg.subject)
            error = InternalError("internal error; see the gateway log")
            reply = encode_error(error, codec)
        code = None if error is None else error.code.value
        await self._reply(msg, reply, operation, started, span, code)

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

    async def _dispatch(
        self, store: str, operation: str, data: bytes, codec: Codec, span: Span | None
    ) -> bytes:
        if store == SYSTEM_STORE:
            admin = self._stores.handlers.get(operation) or self._cluster.handlers.get(operation)
            if admin is not None:
                return await admin(data, codec)
            system_op = self._system_ops.get(operation)
            if system_op is None:
                raise InvalidRequest(f"unknown system operation {operation!r}", field="operation")
            return encode(await system_op(), codec)
        service = FORWARDED_OPERATIONS.get(operation)
        if service is not None:
            self._check_request(store, data)
            return await self._forward(service, store, operation, data, codec, span)
        handler = self._store_ops.get(operation)
        if handler is None:
            raise InvalidRequest(f"unknown operation {operation!r}", field="operation")
        self._check_request(store, data)
        return await handler(store, data, codec, span)

    async def _forward(
        self,
        service: str,
        store: str,
        operation: str,
        data: bytes,
        codec: Codec,
        span: Span | None = None,
    ) -> bytes:
        """Hand a request to the service that owns it; its reply is already encoded."""
        timeout_ms = validation.timeout_ms_of(data, codec)
        validation.check_timeout(timeout_ms, self._settings)
        subject = service_subject(service, store, operation)
        headers = {"Content-Type": content_type_of(codec)}
        if span is not None:
            outgoing(span, headers)
        try:
            reply = await self._nc.request(
                subject, data, timeout=self._timeout(timeout_ms) + 1.0, headers=headers
            )
        except NoRespondersError as e:
            # Nobody received it, so even a request that is not idempotent may be sent again.
            raise Unavailable(
                f"no {service} service is active (a leader election may be under way); retry",
                delivered=False,
            ) from e
        except NatsTimeout as e:
            raise Timeout(f"the {service} service did not answer in time") from e
        return bytes(reply.data)

    def _check_request(self, store: str, data: bytes) -> None:
        check_request(store, data, self._settings)

    def _timeout(self, timeout_ms: int | None) -> float:
        return (timeout_ms or self._settings.timeout_ms) / 1000

    def _write_command(
        self, store: str, operation: str, data: bytes, codec: Codec
    ) -> tuple[WriteRequest, float]:
        """A write operation as a validated command, and how long to wait for it."""
        command, timeout_ms = write_command(store, operation, data, codec, self._settings)
        return command, self._timeout(timeout_ms)

    async def _write(self, command: WriteRequest, timeout: float) -> WriteOutcome:
        """Send one write through the coalescer and wait for its outcome."""
        done: asyncio.Future[WriteOutcome] = asyncio.get_running_loop().create_future()

        async def reply(outcome: WriteOutcome) -> None:
            if not done.done():
                done.set_result(outcome)

        self._writes.submit(command, timeout, reply)
        return await done

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

    def _reader(
        self,
        request_type: type[msgspec.Struct],
        to_query: Callable[..., msgspec.Struct],
        operation: str,
    ) -> Handler:
        async def handler(store: str, data: bytes, codec: Codec, span: Span | None) -> bytes:
            request = decode_request(data, request_type, codec)
            query = to_query(store, request, codec, self._settings)
            # A min_position wait happens in the reader; give it time to answer after it.
            timeout = self._timeout(getattr(request, "timeout_ms", None)) + 1.0
            return await self._ask_reader(operation, _internal.encode(query), timeout, span)

        return handler

    async def _ask_reader(
        self, operation: str, payload: bytes, timeout: float, span: Span | None = None
    ) -> bytes:
        headers = None if span is None else outgoing(span)
        try:
            reply = await self._nc.request(
                reader_subject(operation), payload, timeout=timeout, headers=headers
            )
        except NoRespondersError as e:
            raise Unavailable("no reader is available; retry", delivered=False) from e
        except NatsTimeout as e:
            raise Timeout("the reader did not answer in time") from e
        return bytes(reply.data)  # already encoded for the client by the reader

    async def follow_leader(self) -> None:
        """Watch the writer lease; when its value changes, fail batches sent before."""
        while True:
            try:
                kv = await self._js.key_value(LEASE_BUCKET)
                watcher = await kv.watch(LEASE_KEY)
                seen: bytes | None = None
                async for entry in watcher:
                    if entry is None or entry.value is None:
                        continue  # the end-of-history marker, or a delete
                    if seen is not None and entry.value != seen:
                        log.info("writer lease now %s", entry.value.decode())
                        self._writes.leader_changed()
                    seen = entry.value
            except (nats.errors.Error, TimeoutError) as e:
                log.debug("lease watch interrupted (%s); watching again", e)
            await asyncio.sleep(1.0)

    async def cluster_status(self) -> ClusterStatus:
        """Every writer node that answers within a short window, the log's replicas, and
        what the nodes disagree on."""
        nodes, log_state, registered = await asyncio.gather(
            self._gather_nodes(0.5), self._log_state(), self._members()
        )
        nodes.sort(key=lambda n: n.node_id)
        leader = next((n.node_id for n in nodes if n.role == "leader"), None)
        problems = consistency_problems(nodes)
        answered = {n.node_id for n in nodes}
        members = [
            MemberState(
                node_id=m.node_id, host=m.host, state=m.state, answered=m.node_id in answered
            )
            for m in registered
        ]
        return ClusterStatus(
            leader=leader,
            nodes=nodes,
            log=log_state,
            consistent=not problems,
            problems=problems,
            members=members,
        )

    async def _members(self) -> list[Member]:
        try:
            kv = await self._js.key_value(MEMBERS_BUCKET)
            return await all_members(kv)
        except (nats.errors.Error, TimeoutError):
            return []

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

    async def not_ready(self) -> str | None:
        """Why this gateway cannot serve now (NATS, no writer leader or no reader answering
        within a second), or None: `/readyz`."""
        problem = nats_problem(self._nc)
        if problem is not None:
            return problem
        problems = await asyncio.gather(
            self._probe(WRITER_COMMANDS, _LEADER_PING, "writer leader"),
            self._probe(reader_subject("ping"), b"", "reader"),
        )
        found = [problem for problem in problems if problem is not None]
        return "; ".join(found) if found else None

    async def _probe(self, subject: str, payload: bytes, what: str) -> str | None:
        try:
            await self._nc.request(subject, payload, timeout=PROBE_TIMEOUT_S)
        except NoRespondersError:
            return f"no {what} is available"
        except NatsTimeout:
            return f"no {what} answered within {PROBE_TIMEOUT_S:.0f} s"
        return None

    async def _gather_nodes(self, window: float) -> list[NodeStatus]:
        replies = await gather_replies(self._nc, NODE_STATUS, b"", window)
        return [_node_status.decode(reply) for reply in replies]
