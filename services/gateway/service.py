"""The gateway's core: validate, route writes to the leader, reads to a reader and the rest to
the node-local service that owns them, answer cluster-wide operations, and follow the leader.
Every port is an argument, so tests run it without NATS."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial

import msgspec
from opentelemetry.trace import Span

from esdb.contracts.api import ClusterStatus, Health, LogState, MemberState
from esdb.contracts.commands import WriteBatch, WriteOutcome, WriteRequest
from esdb.contracts.errors import InvalidRequest, Timeout, Unavailable
from esdb.contracts.subjects import (
    FORWARDED_OPERATIONS,
    READ_OPERATIONS,
    SYSTEM_STORE,
    WRITE_OPERATIONS,
    WRITER_COMMANDS,
    Op,
    reader_subject,
    service_subject,
)
from esdb.services.gateway.coalescer import Reply, WriteCoalescer
from esdb.services.gateway.consistency import consistency_problems
from esdb.services.gateway.orphans import OrphanWatch
from esdb.services.gateway.ports import Ask, Unanswered, Unheard
from esdb.services.gateway.restore_admin import RestoreAdmin
from esdb.services.gateway.store_admin import StoreAdmin
from esdb.shared import validation
from esdb.shared.cluster_view import ClusterView
from esdb.shared.reads import read_query
from esdb.shared.requests import check_request
from esdb.shared.settings import Settings
from esdb.shared.tracing import outgoing
from esdb.shared.wire import Codec, content_type_of, encode
from esdb.shared.writes import write_command

log = logging.getLogger(__name__)
_internal = msgspec.msgpack.Encoder()
_LEADER_PING = _internal.encode(WriteBatch([]))
"""An empty batch: the writer leader answers it at once with no outcomes."""
PROBE_TIMEOUT_S = 1.0
STATUS_WINDOW_S = 0.5
LOG_STATE_TIMEOUT_S = 1.0

Handler = Callable[[str, bytes, Codec, Span | None], Awaitable[bytes]]
SystemHandler = Callable[[bytes, Codec], Awaitable[bytes]]


def is_write(store: str, operation: str) -> bool:
    """Whether `operation` on `store` goes to the writer leader through `submit_write`."""
    return store != SYSTEM_STORE and operation in WRITE_OPERATIONS


class GatewayService:
    """Answers `esdb.api.<store>.<operation>` requests; stateless, so any number can run."""

    def __init__(
        self,
        settings: Settings,
        view: ClusterView,
        ask: Ask,
        writes: WriteCoalescer,
        orphans: OrphanWatch,
        cluster_ops: Mapping[str, SystemHandler],
    ) -> None:
        self._settings = settings
        self._view = view
        self._ask = ask
        self._writes = writes
        self._orphans = orphans
        self._cluster_ops = cluster_ops
        self._store_ops: dict[str, Handler] = {
            operation: partial(self._read, operation) for operation in READ_OPERATIONS
        }
        self._stores = StoreAdmin(self._write, self._ask_reader, settings)
        self._restores = RestoreAdmin(self._write, self._forward, settings)
        self._system_ops: dict[str, Callable[[], Awaitable[msgspec.Struct]]] = {
            Op.HEALTH: self.health,
            Op.CLUSTER_STATUS: self.cluster_status,
        }

    def submit_write(
        self,
        store: str,
        operation: str,
        data: bytes,
        codec: Codec,
        reply: Reply,
        span: Span | None = None,
    ) -> None:
        """Validate a write and queue it for the leader; `reply` gets its outcome. An invalid
        write raises its `EsdbError` here."""
        check_request(store, data, self._settings)
        command, timeout_ms = write_command(store, operation, data, codec, self._settings)
        self._writes.submit(command, self._timeout(timeout_ms), reply, span)

    async def answer(
        self, store: str, operation: str, data: bytes, codec: Codec, span: Span | None = None
    ) -> bytes:
        """The encoded reply to a read, a forwarded or a system request; raises `EsdbError`."""
        if store == SYSTEM_STORE:
            admin = (
                self._stores.handlers.get(operation)
                or self._restores.handlers.get(operation)
                or self._cluster_ops.get(operation)
            )
            if admin is not None:
                return await admin(data, codec)
            system_op = self._system_ops.get(operation)
            if system_op is None:
                raise InvalidRequest(f"unknown system operation {operation!r}", field="operation")
            return encode(await system_op(), codec)
        service = FORWARDED_OPERATIONS.get(operation)
        if service is not None:
            check_request(store, data, self._settings)
            return await self._forward(service, store, operation, data, codec, span)
        handler = self._store_ops.get(operation)
        if handler is None:
            raise InvalidRequest(f"unknown operation {operation!r}", field="operation")
        check_request(store, data, self._settings)
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
            return await self._ask(subject, data, self._timeout(timeout_ms) + 1.0, headers)
        except Unheard as e:
            # Nobody received it, so even a request that is not idempotent may be sent again.
            raise Unavailable(
                f"no {service} service is active (a leader election may be under way); retry",
                delivered=False,
            ) from e
        except Unanswered as e:
            raise Timeout(f"the {service} service did not answer in time") from e

    def _timeout(self, timeout_ms: int | None) -> float:
        return (timeout_ms or self._settings.timeout_ms) / 1000

    async def _write(self, command: WriteRequest, timeout: float) -> WriteOutcome:
        """Send one write through the coalescer and wait for its outcome."""
        done: asyncio.Future[WriteOutcome] = asyncio.get_running_loop().create_future()

        async def reply(outcome: WriteOutcome) -> None:
            if not done.done():
                done.set_result(outcome)

        self._writes.submit(command, timeout, reply)
        return await done

    async def _read(
        self, operation: str, store: str, data: bytes, codec: Codec, span: Span | None
    ) -> bytes:
        """A read the servers did not route straight to a reader: validated here, answered
        by one."""
        query, timeout_ms = read_query(store, operation, data, codec, self._settings)
        # A min_position wait happens in the reader; give it time to answer after it.
        timeout = self._timeout(timeout_ms) + 1.0
        return await self._ask_reader(operation, _internal.encode(query), timeout, span)

    async def _ask_reader(
        self, operation: str, payload: bytes, timeout: float, span: Span | None = None
    ) -> bytes:
        headers = None if span is None else outgoing(span)
        try:
            # Already encoded for the client by the reader.
            return await self._ask(reader_subject(operation), payload, timeout, headers)
        except Unheard as e:
            raise Unavailable("no reader is available; retry", delivered=False) from e
        except Unanswered as e:
            raise Timeout("the reader did not answer in time") from e

    async def follow_leader(self) -> None:
        """Until cancelled: when the lease changes hands (or its holder restarted), fail the
        batches sent before; when a leader announces that it serves, answer the writes an
        earlier leader may have taken with it."""
        seen = self._view.leadership
        lease = seen.lease
        while True:
            now = await self._view.leadership_change(seen)
            if now.lease is not None:
                if lease is not None and now.lease != lease:
                    log.info("writer lease now %s", now.lease.decode(errors="replace"))
                    self._writes.leader_changed()
                lease = now.lease
            if now.announcements != seen.announcements:
                answered = await self._orphans.leader_serving()
                if answered:
                    log.info(
                        "a new leader serves; answered %d writes an earlier leader may have lost",
                        answered,
                    )
            seen = now

    async def cluster_status(self) -> ClusterStatus:
        """Every writer node that answers within a short window, the log's replicas, what
        the nodes disagree on, and every registered member."""
        nodes, log_state, registered = await asyncio.gather(
            self._view.node_statuses(STATUS_WINDOW_S), self._log_state(), self._view.members()
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

    async def _log_state(self) -> LogState | None:
        try:
            return await self._view.log_state(LOG_STATE_TIMEOUT_S)
        except Unavailable:
            return None  # the status says what it knows

    async def health(self) -> Health:
        """`ok` when a leader takes writes and a reader answers, else `unavailable`."""
        status = await self.cluster_status()
        readers = 0 if await self._probe(reader_subject("ping"), b"", "reader") else 1
        ok = status.leader is not None and readers > 0
        return Health(status="ok" if ok else "unavailable", leader=status.leader, readers=readers)

    async def not_ready(self) -> str | None:
        """Why this gateway cannot serve now (no writer leader or no reader answering within
        a second), or None: `/readyz`."""
        problems = await asyncio.gather(
            self._probe(WRITER_COMMANDS, _LEADER_PING, "writer leader"),
            self._probe(reader_subject("ping"), b"", "reader"),
        )
        found = [problem for problem in problems if problem is not None]
        return "; ".join(found) if found else None

    async def _probe(self, subject: str, payload: bytes, what: str) -> str | None:
        try:
            await self._ask(subject, payload, PROBE_TIMEOUT_S, None)
        except Unheard:
            return f"no {what} is available"
        except Unanswered:
            return f"no {what} answered within {PROBE_TIMEOUT_S:.0f} s"
        return None
