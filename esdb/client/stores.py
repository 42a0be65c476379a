"""Store operations of `Client` (`_sys.store_*`): stores are separate event logs."""

from __future__ import annotations

import msgspec

from esdb.client.connection import Requests
from esdb.contracts.api import (
    StoreConfig,
    StoreInfo,
    StoreList,
    StoreListRequest,
    StoreRemoved,
    StoreRequest,
)
from esdb.contracts.subjects import SYSTEM_STORE, Op, api_subject

_info = msgspec.msgpack.Decoder(StoreInfo)
_list = msgspec.msgpack.Decoder(StoreList)
_removed = msgspec.msgpack.Decoder(StoreRemoved)


class StoreOperations:
    """Mixed into `Client`: create, remove, list, inspect and configure stores."""

    _connection: Requests

    async def _store_call(
        self, op: str, request: msgspec.Struct, decoder: msgspec.msgpack.Decoder[StoreInfo]
    ) -> StoreInfo:
        return await self._connection.request(api_subject(SYSTEM_STORE, op), request, decoder)

    def _request(self, name: str, config: StoreConfig | None = None) -> StoreRequest:
        return StoreRequest(
            store=name, config=config, timeout_ms=self._connection.server_timeout_ms
        )

    async def create_store(
        self, name: str, *, description: str = "", tags: list[str] | None = None
    ) -> StoreInfo:
        """Create a store on every node; raises `AlreadyExists` if it exists."""
        config = StoreConfig(description=description, tags=tags or [])
        return await self._store_call(Op.STORE_CREATE, self._request(name, config), _info)

    async def remove_store(self, name: str) -> None:
        """Remove a store and all its data on every node; `NotFound` if there is none."""
        await self._connection.request(
            api_subject(SYSTEM_STORE, Op.STORE_REMOVE), self._request(name), _removed, write=True
        )

    async def list_stores(self) -> list[StoreInfo]:
        """Every store with its config."""
        request = StoreListRequest(timeout_ms=self._connection.server_timeout_ms)
        result = await self._connection.request(
            api_subject(SYSTEM_STORE, Op.STORE_LIST), request, _list, idempotent=True
        )
        return result.stores

    async def store_status(self, name: str) -> StoreInfo:
        """A store's config, last position, applied log sequence and size on one node."""
        return await self._connection.request(
            api_subject(SYSTEM_STORE, Op.STORE_STATUS), self._request(name), _info, idempotent=True
        )

    async def store_config(self, name: str, config: StoreConfig | None = None) -> StoreConfig:
        """A store's config; replaced first when `config` is given."""
        info = await self._store_call(Op.STORE_CONFIG, self._request(name, config), _info)
        return info.config
