"""Entry point: `python -m esdb.services.reader`: thin NATS handlers over `queries`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec
from nats.aio.msg import Msg

from esdb.contracts.commands import AllQuery, InfoQuery, ListQuery, StoreQuery, StreamQuery
from esdb.contracts.errors import EsdbError, InternalError, Unavailable
from esdb.contracts.subjects import READER_QUEUE, Op, reader_subject
from esdb.services.reader import queries
from esdb.services.reader import stores as store_queries
from esdb.shared.nats_connection import concurrently, connect_service
from esdb.shared.service_runtime import run_service
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import ReadOnlyStores, open_system
from esdb.shared.wire import Codec, encode, encode_error

log = logging.getLogger(__name__)
Handler = Callable[[Msg], Coroutine[Any, Any, None]]


Query = StreamQuery | AllQuery | ListQuery | InfoQuery | StoreQuery


def _handler(
    query_type: type[Query], answer: Callable[[Any], Awaitable[msgspec.Struct]]
) -> Handler:
    """Decode a query, answer it, reply in the codec the query names; errors typed."""
    decoder = msgspec.msgpack.Decoder(query_type)

    async def handle(msg: Msg) -> None:
        codec = Codec.MSGPACK
        try:
            query = decoder.decode(msg.data)
            codec = Codec(query.codec)
            reply = encode(await answer(query), codec)
        except EsdbError as e:
            reply = encode_error(e, codec)
        except Exception:
            log.exception("reader failed on %s", msg.subject)
            reply = encode_error(InternalError("internal error; see the reader log"), codec)
        await msg.respond(reply)

    return handle


def _from_store(
    stores: ReadOnlyStores, answer: Callable[[Any, Any], msgspec.Struct]
) -> Callable[[Any], Awaitable[msgspec.Struct]]:
    """Answer from the query's store, once it has applied the query's `min_position`."""

    async def read(query: StreamQuery | AllQuery | ListQuery | InfoQuery) -> msgspec.Struct:
        store = stores.get(query.store)
        if isinstance(query, StreamQuery | AllQuery):
            await queries.wait_for_position(store, query.min_position, query.wait_ms)
        return answer(store, query)

    return read


def _from_system(
    settings: Settings, stores: ReadOnlyStores, answer: Callable[..., msgspec.Struct]
) -> Callable[[Any], Awaitable[msgspec.Struct]]:
    """Answer from the node's system store (which stores exist, their config)."""

    async def read(query: StoreQuery) -> msgspec.Struct:
        with open_system(settings.data_dir) as system:
            if system is None:
                raise Unavailable("this node has no data yet")
            return answer(system, stores, query)

    return read


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Composition root of a reader: read-only stores behind the internal read subjects."""
    nc = await connect_service(settings, f"esdb-reader-{settings.node_id}")
    stores = ReadOnlyStores(settings.data_dir)
    routes: dict[str, Handler] = {
        Op.READ_STREAM: _handler(StreamQuery, _from_store(stores, queries.read_stream)),
        Op.READ_ALL: _handler(AllQuery, _from_store(stores, queries.read_all)),
        Op.LIST_STREAMS: _handler(ListQuery, _from_store(stores, queries.list_streams)),
        Op.STREAM_INFO: _handler(InfoQuery, _from_store(stores, queries.stream_info)),
        **{
            operation: _handler(StoreQuery, _from_system(settings, stores, answer))
            for operation, answer in (
                (Op.STORE_LIST, store_queries.store_list),
                (Op.STORE_STATUS, store_queries.store_status),
                (Op.STORE_CONFIG, store_queries.store_config_of),
            )
        },
    }

    async def ping(msg: Msg) -> None:
        await msg.respond(b"pong")

    for operation, handle in routes.items():
        await nc.subscribe(reader_subject(operation), queue=READER_QUEUE, cb=concurrently(handle))
    await nc.subscribe(reader_subject("ping"), queue=READER_QUEUE, cb=ping)
    try:
        await stop.wait()
        await nc.drain()
    finally:
        stores.close()


def main() -> None:
    """Run the reader until SIGINT/SIGTERM."""
    run_service("reader", serve)


if __name__ == "__main__":
    main()
