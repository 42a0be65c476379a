"""`_sys.store_create`, `store_remove`, `store_list`, `store_status` and `store_config`:
changes go through the log as writes, so every node agrees; reads come from a reader."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from esdb.contracts.api import StoreConfig, StoreInfo, StoreListRequest, StoreRemoved, StoreRequest
from esdb.contracts.commands import (
    STORE_CONFIGURE,
    STORE_CREATE,
    STORE_REMOVE,
    StoreChange,
    StoreQuery,
    WriteOutcome,
    WriteRequest,
)
from esdb.contracts.errors import InvalidRequest, error_from_body
from esdb.contracts.subjects import Op
from esdb.shared.names import check_store
from esdb.shared.settings import Settings
from esdb.shared.validation import check_timeout
from esdb.shared.wire import Codec, decode_request, encode

Write = Callable[[WriteRequest, float], Awaitable[WriteOutcome]]
AskReader = Callable[[str, bytes, float], Awaitable[bytes]]
MAX_DESCRIPTION = 1024
MAX_TAGS = 32
MAX_TAG = 64
_internal = msgspec.msgpack.Encoder()


class StoreAdmin:
    """The store operations of the gateway."""

    def __init__(self, write: Write, ask_reader: AskReader, settings: Settings) -> None:
        self._write = write
        self._ask_reader = ask_reader
        self._settings = settings
        self.handlers: dict[str, Callable[[bytes, Codec], Awaitable[bytes]]] = {
            Op.STORE_CREATE: self.create,
            Op.STORE_REMOVE: self.remove,
            Op.STORE_CONFIG: self.config,
            Op.STORE_LIST: self.list_stores,
            Op.STORE_STATUS: self.status,
        }

    def _timeout(self, timeout_ms: int | None) -> float:
        check_timeout(timeout_ms, self._settings)
        return (timeout_ms or self._settings.timeout_ms) / 1000

    async def _change(self, request: StoreRequest, action: str) -> None:
        config = {} if request.config is None else msgspec.to_builtins(request.config)
        change = StoreChange(action, config)
        outcome = await self._write(
            WriteRequest(request.store, [], store_change=change), self._timeout(request.timeout_ms)
        )
        if outcome.error is not None:
            raise error_from_body(outcome.error)

    async def create(self, data: bytes, codec: Codec) -> bytes:
        """Create a store; `already_exists` if there is one of that name."""
        request = _store_request(data, codec)
        await self._change(request, STORE_CREATE)
        return encode(StoreInfo(store=request.store, config=request.config or StoreConfig()), codec)

    async def remove(self, data: bytes, codec: Codec) -> bytes:
        """Remove a store and its data on every node."""
        request = _store_request(data, codec)
        if request.store == self._settings.default_store:
            raise InvalidRequest(
                f"{request.store!r} is the default store (ESDB_DEFAULT_STORE); it cannot be "
                "removed",
                field="store",
            )
        await self._change(request, STORE_REMOVE)
        return encode(StoreRemoved(store=request.store), codec)

    async def config(self, data: bytes, codec: Codec) -> bytes:
        """A store's config, replaced first when the request carries one."""
        request = _store_request(data, codec)
        if request.config is not None:
            await self._change(request, STORE_CONFIGURE)
            return encode(StoreInfo(store=request.store, config=request.config), codec)
        return await self._read(Op.STORE_CONFIG, request.store, codec, request.timeout_ms)

    async def list_stores(self, data: bytes, codec: Codec) -> bytes:
        """Every store (an empty request body is fine)."""
        timeout_ms = decode_request(data, StoreListRequest, codec).timeout_ms if data else None
        return await self._read(Op.STORE_LIST, None, codec, timeout_ms)

    async def status(self, data: bytes, codec: Codec) -> bytes:
        """One store's config and its data on the answering node."""
        request = _store_request(data, codec)
        return await self._read(Op.STORE_STATUS, request.store, codec, request.timeout_ms)

    async def _read(
        self, op: str, store: str | None, codec: Codec, timeout_ms: int | None
    ) -> bytes:
        query = _internal.encode(StoreQuery(store=store, codec=codec.value))
        return await self._ask_reader(op, query, self._timeout(timeout_ms))


def _store_request(data: bytes, codec: Codec) -> StoreRequest:
    request = decode_request(data, StoreRequest, codec)
    check_store(request.store)
    config = request.config
    if config is not None:
        if len(config.description) > MAX_DESCRIPTION:
            raise InvalidRequest(
                f"description is over {MAX_DESCRIPTION} characters", field="config.description"
            )
        if len(config.tags) > MAX_TAGS or any(not tag or len(tag) > MAX_TAG for tag in config.tags):
            raise InvalidRequest(
                f"at most {MAX_TAGS} tags of 1 to {MAX_TAG} characters", field="config.tags"
            )
    return request
