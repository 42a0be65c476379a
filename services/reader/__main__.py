"""Entry point: `python -m esdb.services.reader`: thin NATS handlers over `queries`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, cast

import msgspec
from nats.aio.msg import Msg
from opentelemetry.trace import Span, SpanKind, Tracer

from esdb.contracts.api import ReadAllRequest
from esdb.contracts.commands import (
    AllQuery,
    DcbReadQuery,
    InfoQuery,
    ListQuery,
    StoreQuery,
    StreamQuery,
)
from esdb.contracts.errors import EsdbError, InternalError, InvalidRequest, Unavailable
from esdb.contracts.subjects import (
    READ_OPERATIONS,
    READ_PREFIX,
    READER_QUEUE,
    SYSTEM_STORE,
    Op,
    reader_subject,
)
from esdb.services.reader import queries
from esdb.services.reader import stores as store_queries
from esdb.services.reader.catch_up import log_end, wait_caught_up
from esdb.services.reader.dcb_reads import dcb_read
from esdb.services.reader.reply_size import HEADROOM
from esdb.shared.cluster_view import NatsClusterView
from esdb.shared.metrics import OTHER, RequestMetrics
from esdb.shared.nats_connection import connect_service, retry_until_ready
from esdb.shared.reads import read_request
from esdb.shared.requests import check_request, target
from esdb.shared.service_runtime import run_service
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import ReadOnlyStores, applied_on_disk, open_system
from esdb.shared.storage.port import StoreReader
from esdb.shared.telemetry import Telemetry, nats_problem
from esdb.shared.tracing import child_span, end_span, incoming
from esdb.shared.wire import Codec, codec_of, encode, encode_error

log = logging.getLogger(__name__)
Handler = Callable[[Msg], Coroutine[Any, Any, None]]


Query = StreamQuery | AllQuery | ListQuery | InfoQuery | StoreQuery | DcbReadQuery


Decode = Callable[[Msg], tuple[Any, Codec]]
"""A request's query and the codec its reply takes; raises `EsdbError` for a bad request."""


Answer = Callable[[Any], "msgspec.Struct | Awaitable[msgspec.Struct]"]
"""A query's result, or, when the node has yet to apply the query's `min_position`, an
awaitable of it."""


Publish = Callable[[str, bytes], Awaitable[None]]
"""Send a message: `nc.publish(subject, payload)`."""


def _handler(
    operation: str,
    decode: Decode,
    answer: Answer,
    metrics: RequestMetrics,
    tracer: Tracer | None,
    codec_before_decode: Callable[[Msg], Codec],
    publish: Publish,
) -> Handler:
    """Decode a query, answer it, reply in the codec the request names; errors typed. A query
    that can be answered now is answered in the subscription's own callback: a task per read
    cost the reader about 10 µs of its ~100 for a small one. Only one that waits for its
    `min_position` gets a task, so it holds up no other. The reply is published bare:
    `Msg.respond` would copy the request's headers onto it, which nobody reads, for a few
    µs of encoding here and of parsing at the client per read."""
    waiting: set[asyncio.Task[None]] = set()

    async def handle(msg: Msg) -> None:
        started = time.perf_counter()
        span = None
        if tracer is not None and (context := incoming(msg.headers)) is not None:
            span = child_span(tracer, f"reader {operation}", context, kind=SpanKind.SERVER)
        codec = codec_before_decode(msg)
        try:
            query, codec = decode(msg)
            result = answer(query)
        except Exception as e:
            await reply(msg, codec, started, span, failure=e)
            return
        if isinstance(result, msgspec.Struct):
            await reply(msg, codec, started, span, result=result)
            return
        task = asyncio.create_task(reply_when(msg, codec, started, span, result))
        waiting.add(task)
        task.add_done_callback(waiting.discard)

    async def reply_when(
        msg: Msg,
        codec: Codec,
        started: float,
        span: Span | None,
        pending: Awaitable[msgspec.Struct],
    ) -> None:
        try:
            result = await pending
        except Exception as e:
            await reply(msg, codec, started, span, failure=e)
            return
        await reply(msg, codec, started, span, result=result)

    async def reply(
        msg: Msg,
        codec: Codec,
        started: float,
        span: Span | None,
        *,
        result: msgspec.Struct | None = None,
        failure: Exception | None = None,
    ) -> None:
        error: EsdbError | None = None
        if isinstance(failure, EsdbError):
            error = failure
        elif failure is not None:
            log.error("reader failed on %s", msg.subject, exc_info=failure)
            error = InternalError("internal error; see the reader log")
        data = encode_error(error, codec) if error is not None else encode(result, codec)
        if msg.reply:
            await publish(msg.reply, data)
        code = None if error is None else error.code.value
        metrics.answered(operation, time.perf_counter() - started, code)
        end_span(span, code)

    return handle


def _internal_query(query_type: type[Query]) -> Decode:
    """A query the gateway validated and sent on `esdb.internal.reader.<operation>`."""
    decoder = msgspec.msgpack.Decoder(query_type)

    def decode(msg: Msg) -> tuple[Any, Codec]:
        query = decoder.decode(msg.data)
        return query, Codec(query.codec)

    return decode


def _public_read(settings: Settings) -> Decode:
    """A client's own read, routed here by the servers' mapping (`esdb.read.<s>.<op>`)."""

    def decode(msg: Msg) -> tuple[Any, Codec]:
        codec = codec_of(msg.headers, msg.data)
        store, operation = target(msg.subject)
        if store == SYSTEM_STORE:
            raise InvalidRequest(f"unknown system operation {operation!r}", field="operation")
        check_request(store, msg.data, settings)
        query, request = read_request(store, operation, msg.data, codec, settings)
        if isinstance(request, ReadAllRequest) and request.compact:
            return queries.Compact(cast(AllQuery, query)), codec
        return query, codec

    return decode


def _msgpack(msg: Msg) -> Codec:
    return Codec.MSGPACK


def _handler_by_operation(handlers: dict[str, Handler], unknown: Handler) -> Handler:
    """One handler for `esdb.read.>`: the one of the subject's operation, else `unknown`
    (a client may publish there directly, not only through the mapping)."""

    async def handle(msg: Msg) -> None:
        await handlers.get(msg.subject.rpartition(".")[2], unknown)(msg)

    return handle


def _from_store(stores: ReadOnlyStores, answer: Callable[[Any, Any], msgspec.Struct]) -> Answer:
    """Answer from the query's store, once it has applied the query's `min_position`."""

    def read(
        query: StreamQuery | AllQuery | queries.Compact | ListQuery | InfoQuery | DcbReadQuery,
    ) -> Any:
        asked = query.query if isinstance(query, queries.Compact) else query
        store = stores.get(asked.store)
        if isinstance(asked, StreamQuery | AllQuery | DcbReadQuery) and not queries.has_applied(
            store, asked.min_position
        ):
            return _after_position(store, query, asked.min_position, asked.wait_ms, answer)
        return answer(store, query)

    return read


async def _after_position(
    store: StoreReader,
    query: object,
    min_position: int | None,
    wait_ms: int,
    answer: Callable[[Any, Any], msgspec.Struct],
) -> msgspec.Struct:
    await queries.wait_for_position(store, min_position, wait_ms)
    return answer(store, query)


def _from_system(
    settings: Settings, stores: ReadOnlyStores, answer: Callable[..., msgspec.Struct]
) -> Answer:
    """Answer from the node's system store (which stores exist, their config)."""

    def read(query: StoreQuery) -> msgspec.Struct:
        with open_system(settings.data_dir) as system:
            if system is None:
                raise Unavailable("this node has no data yet")
            return answer(system, stores, query)

    return read


async def serve(settings: Settings, stop: asyncio.Event, telemetry: Telemetry) -> None:
    """Composition root of a reader: read-only stores behind the internal read subjects."""
    nc = await connect_service(settings, f"esdb-reader-{settings.node_id}")
    stores = ReadOnlyStores(settings.data_dir)
    fits = nc.max_payload - HEADROOM  # a page's reply, within the servers' limit
    answers: dict[str, tuple[type[Query], Answer]] = {
        Op.READ_STREAM: (
            StreamQuery,
            _from_store(stores, partial(queries.read_stream, max_bytes=fits)),
        ),
        Op.READ_ALL: (AllQuery, _from_store(stores, partial(queries.read_all, max_bytes=fits))),
        Op.LIST_STREAMS: (
            ListQuery,
            _from_store(stores, partial(queries.list_streams, max_bytes=fits)),
        ),
        Op.STREAM_INFO: (InfoQuery, _from_store(stores, queries.stream_info)),
        Op.DCB_READ: (DcbReadQuery, _from_store(stores, partial(dcb_read, max_bytes=fits))),
        **{
            operation: (StoreQuery, _from_system(settings, stores, answer))
            for operation, answer in (
                (Op.STORE_LIST, store_queries.store_list),
                (Op.STORE_STATUS, store_queries.store_status),
                (Op.STORE_CONFIG, store_queries.store_config_of),
            )
        },
    }
    metrics = RequestMetrics(telemetry.registry, answers, service="reader")
    routes: dict[str, Handler] = {
        operation: _handler(
            operation,
            _internal_query(query_type),
            answer,
            metrics,
            telemetry.tracer,
            _msgpack,
            nc.publish,
        )
        for operation, (query_type, answer) in answers.items()
    }

    def public_handler(operation: str, answer: Answer) -> Handler:
        decode, codec = _public_read(settings), lambda msg: codec_of(msg.headers, msg.data)
        return _handler(operation, decode, answer, metrics, telemetry.tracer, codec, nc.publish)

    # An unknown operation fails in `_public_read`, before any answer is asked for.
    public = _handler_by_operation(
        {
            operation: public_handler(operation, answers[operation][1])
            for operation in READ_OPERATIONS
        },
        public_handler(OTHER, answers[Op.READ_STREAM][1]),
    )

    async def not_ready() -> str | None:
        problem = nats_problem(nc)
        if problem is not None:
            return problem
        with open_system(settings.data_dir) as system:
            return "this node has no data yet" if system is None else None

    telemetry.ready_when(not_ready)

    async def ping(msg: Msg) -> None:
        await msg.respond(b"pong")

    # Not NodeProgress: the reader opens the system store per request (`open_system`), and
    # LMDB forbids a second environment on it in the same process.
    applied = partial(applied_on_disk, settings.data_dir)
    try:
        async with NatsClusterView(nc, settings.node_id, applied_on_disk=applied) as view:
            target = await retry_until_ready(
                partial(log_end, view), what="the log", timeout=300, retry_on=(Unavailable,)
            )
            if await wait_caught_up(view, target, stop):
                for operation, handle in routes.items():
                    await nc.subscribe(reader_subject(operation), queue=READER_QUEUE, cb=handle)
                await nc.subscribe(reader_subject("ping"), queue=READER_QUEUE, cb=ping)
                # Reads the servers route straight here, skipping the gateway.
                await nc.subscribe(f"{READ_PREFIX}.>", queue=READER_QUEUE, cb=public)
                await stop.wait()
            await nc.drain()
    finally:
        stores.close()


def main() -> None:
    """Run the reader until SIGINT/SIGTERM."""
    run_service("reader", serve)


if __name__ == "__main__":
    main()
