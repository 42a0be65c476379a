"""Restore operations of `Client` (`_sys.store_restore`, `_sys.subscription_restore`,
`_sys.projection_restore`): admin-only writes that put a store back as an export saw it
(`esdb import` uses them)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import msgspec

from esdb.client.connection import Requests
from esdb.contracts.api import AppendResult
from esdb.contracts.projections import ProjectionInfo
from esdb.contracts.restore import (
    NO_FENCE,
    ProjectionRestoreRequest,
    RestoreSnapshot,
    RestoreStream,
    StoreRestoreRequest,
    StoreRestoreResult,
    SubscriptionRestoreRequest,
)
from esdb.contracts.subjects import SYSTEM_STORE, Op, api_subject
from esdb.contracts.subscriptions import SubscriptionInfo

_restored = msgspec.msgpack.Decoder(StoreRestoreResult)
_subscription = msgspec.msgpack.Decoder(SubscriptionInfo)
_projection = msgspec.msgpack.Decoder(ProjectionInfo)
T = TypeVar("T")


class RestoreOperations:
    """Mixed into `Client`: the restore writes, on the client's store."""

    _connection: Requests
    store: str

    async def restore_streams(
        self,
        streams: Iterable[RestoreStream],
        *,
        snapshots: Iterable[RestoreSnapshot] = (),
        expected_position: int = NO_FENCE,
    ) -> list[AppendResult]:
        """Restore streams (and snapshots) all or nothing, only while the store's last position
        is `expected_position`; one result per stream. Sent again, it answers as the first
        time, so it is retried like an append with ids."""
        request = StoreRestoreRequest(
            store=self.store,
            expected_position=expected_position,
            streams=list(streams),
            snapshots=list(snapshots),
            timeout_ms=self._connection.server_timeout_ms,
        )
        result = await self._connection.request(
            api_subject(SYSTEM_STORE, Op.STORE_RESTORE), request, _restored, idempotent=True
        )
        return result.results

    async def restore_subscription(self, request: SubscriptionRestoreRequest) -> SubscriptionInfo:
        """Create a persistent subscription with its checkpoint and parked events, in this
        store's positions; `AlreadyExists` if there is one of that name."""
        return await self._create(Op.SUBSCRIPTION_RESTORE, request, _subscription)

    async def restore_projection(self, request: ProjectionRestoreRequest) -> ProjectionInfo:
        """Create a projection with its checkpoint, counts and partition states, in this
        store's positions; `AlreadyExists` if there is one of that name."""
        return await self._create(Op.PROJECTION_RESTORE, request, _projection)

    async def _create(
        self,
        operation: str,
        request: SubscriptionRestoreRequest | ProjectionRestoreRequest,
        decoder: msgspec.msgpack.Decoder[T],
    ) -> T:
        """Send a restore that creates one subscription or projection of this store."""
        request = msgspec.structs.replace(
            request, store=self.store, timeout_ms=self._connection.server_timeout_ms
        )
        return await self._connection.request(
            api_subject(SYSTEM_STORE, operation), request, decoder, write=True
        )
