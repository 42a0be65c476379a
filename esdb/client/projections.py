"""Projection operations of `Client` (`projection_create`, `_update`, `_delete`, `_enable`,
`_disable`, `_reset`, `_list`, `_info`, `_state`, `_result`, `_partitions`). See
docs/projections.md."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from esdb.client.connection import Requests
from esdb.contracts.projections import (
    START_AT_START,
    ProjectionCreateRequest,
    ProjectionDeleted,
    ProjectionInfo,
    ProjectionList,
    ProjectionListRequest,
    ProjectionNameRequest,
    ProjectionPartition,
    ProjectionPartitions,
    ProjectionPartitionsRequest,
    ProjectionResultOut,
    ProjectionStateOut,
    ProjectionStateRequest,
)
from esdb.contracts.subjects import Op, api_subject

_info = msgspec.msgpack.Decoder(ProjectionInfo)
_list = msgspec.msgpack.Decoder(ProjectionList)
_state = msgspec.msgpack.Decoder(ProjectionStateOut)
_result = msgspec.msgpack.Decoder(ProjectionResultOut)
_deleted = msgspec.msgpack.Decoder(ProjectionDeleted)
_partitions = msgspec.msgpack.Decoder(ProjectionPartitions)


class _Update(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`ProjectionUpdateRequest` without the fields left alone."""

    name: str
    query: str | None = None
    emit_enabled: bool | None = None
    timeout_ms: int | None = None


class ProjectionOperations:
    """Mixed into `Client`: JavaScript projections of the client's store, run by the server."""

    _connection: Requests
    store: str

    def _subject(self, operation: str) -> str:
        return api_subject(self.store, operation)

    async def create_projection(
        self,
        name: str,
        query: str,
        *,
        start: str = START_AT_START,
        enabled: bool = True,
        emit_enabled: bool = False,
    ) -> ProjectionInfo:
        """Define projection `name` running `query` from the store's `"start"` or `"end"`;
        raises `InvalidRequest` (details: the JavaScript `error` and `line`) or
        `AlreadyExists`."""
        request = ProjectionCreateRequest(
            name=name,
            query=query,
            start=start,
            enabled=enabled,
            emit_enabled=emit_enabled,
            timeout_ms=self._connection.server_timeout_ms,
        )
        subject = self._subject(Op.PROJECTION_CREATE)
        return await self._connection.request(subject, request, _info, write=True)

    async def update_projection(
        self, name: str, *, query: str | None = None, emit_enabled: bool | None = None
    ) -> ProjectionInfo:
        """A new query and/or `emit_enabled`; its state and checkpoint stay."""
        request = _Update(
            name=name,
            query=query,
            emit_enabled=emit_enabled,
            timeout_ms=self._connection.server_timeout_ms,
        )
        subject = self._subject(Op.PROJECTION_UPDATE)
        return await self._connection.request(subject, request, _info, write=True)

    async def _named(self, operation: str, name: str) -> ProjectionInfo:
        request = ProjectionNameRequest(name=name, timeout_ms=self._connection.server_timeout_ms)
        return await self._connection.request(self._subject(operation), request, _info, write=True)

    async def enable_projection(self, name: str) -> ProjectionInfo:
        """Run it (again, after a fault: from where it stopped)."""
        return await self._named(Op.PROJECTION_ENABLE, name)

    async def disable_projection(self, name: str) -> ProjectionInfo:
        """Stop it where it is."""
        return await self._named(Op.PROJECTION_DISABLE, name)

    async def reset_projection(self, name: str) -> ProjectionInfo:
        """Clear its states and checkpoint; what it emitted stays."""
        return await self._named(Op.PROJECTION_RESET, name)

    async def delete_projection(self, name: str) -> None:
        """Remove it and its states; what it emitted stays. Raises `NotFound`."""
        request = ProjectionNameRequest(name=name, timeout_ms=self._connection.server_timeout_ms)
        subject = self._subject(Op.PROJECTION_DELETE)
        await self._connection.request(subject, request, _deleted, write=True)

    async def list_projections(self) -> list[ProjectionInfo]:
        """Every projection of the store."""
        request = ProjectionListRequest(timeout_ms=self._connection.server_timeout_ms)
        subject = self._subject(Op.PROJECTION_LIST)
        reply = await self._connection.request(subject, request, _list, idempotent=True)
        return reply.projections

    async def projection_info(self, name: str) -> ProjectionInfo:
        """Its status, position, lag and counts; raises `NotFound`."""
        request = ProjectionNameRequest(name=name, timeout_ms=self._connection.server_timeout_ms)
        subject = self._subject(Op.PROJECTION_INFO)
        return await self._connection.request(subject, request, _info, idempotent=True)

    async def projection_state(self, name: str, partition: str | None = None) -> Any:
        """The state (JSON value) of a partition, or the shared one."""
        request = ProjectionStateRequest(
            name=name, partition=partition, timeout_ms=self._connection.server_timeout_ms
        )
        subject = self._subject(Op.PROJECTION_STATE)
        reply = await self._connection.request(subject, request, _state, idempotent=True)
        return reply.state

    async def projection_result(self, name: str, partition: str | None = None) -> Any:
        """The result (the state through `transformBy`/`filterBy`) of a partition."""
        request = ProjectionStateRequest(
            name=name, partition=partition, timeout_ms=self._connection.server_timeout_ms
        )
        subject = self._subject(Op.PROJECTION_RESULT)
        reply = await self._connection.request(subject, request, _result, idempotent=True)
        return reply.result

    async def iter_projection_partitions(
        self, name: str, *, page_size: int = 100
    ) -> AsyncIterator[ProjectionPartition]:
        """Every partition of projection `name` in key order, with its state and result."""
        after: str | None = None
        while True:
            request = ProjectionPartitionsRequest(
                name=name,
                after=after,
                limit=page_size,
                timeout_ms=self._connection.server_timeout_ms,
            )
            subject = self._subject(Op.PROJECTION_PARTITIONS)
            page = await self._connection.request(subject, request, _partitions, idempotent=True)
            for partition in page.partitions:
                yield partition
            if page.next is None:
                return
            after = page.next
