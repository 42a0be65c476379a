"""The projections API (`esdb.api.<store>.projection_*`) on every node: definitions become
log ops that every node applies; reads come from this node's LMDB once it has caught up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from esdb.contracts.errors import AlreadyExists, InvalidRequest, NotFound
from esdb.contracts.log import (
    PROJECTION_CREATE,
    PROJECTION_DELETE,
    PROJECTION_DISABLE,
    PROJECTION_ENABLE,
    PROJECTION_RESET,
    PROJECTION_UPDATE,
    LogOp,
    ProjectionDefineOp,
)
from esdb.contracts.projections import (
    MAX_NAME_BYTES,
    MAX_QUERY_BYTES,
    SHARED_PARTITION,
    START_AT_END,
    START_AT_START,
    ProjectionCreateRequest,
    ProjectionDeleted,
    ProjectionInfo,
    ProjectionList,
    ProjectionListRequest,
    ProjectionNameRequest,
    ProjectionPartitions,
    ProjectionPartitionsRequest,
    ProjectionResultOut,
    ProjectionStateOut,
    ProjectionStateRequest,
    ProjectionUpdateRequest,
    StoredProjection,
    projection_status,
    stored_partition_decoder,
    stored_projection_decoder,
)
from esdb.contracts.restore import ProjectionRestoreRequest
from esdb.contracts.subjects import Op
from esdb.services.projection.partitions import json_value, partition_page
from esdb.services.projection.restoring import restore_op
from esdb.services.projection.runtime import Isolate, QueryError
from esdb.services.projection.service import stored_projections
from esdb.shared.freshness import Deadline
from esdb.shared.names import CONTROL_CHARACTERS
from esdb.shared.storage import item_keys
from esdb.shared.storage.port import StoreReader
from esdb.shared.wire import Codec

StoreSource = Callable[[str], StoreReader]
SubmitOps = Callable[[list[LogOp], float], Awaitable[None]]
CatchUp = Callable[[float], Awaitable[None]]
Answer = Callable[[str, Any, Codec], Awaitable[msgspec.Struct]]


def check_name(name: str) -> str:
    """A projection name: 1-200 bytes without control characters."""
    if not name:
        raise InvalidRequest("name must not be empty", field="name")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidRequest(f"name must be at most {MAX_NAME_BYTES} bytes", field="name")
    if CONTROL_CHARACTERS.search(name):
        raise InvalidRequest("name must not contain control characters", field="name")
    return name


def check_query(query: str, emit_enabled: bool) -> str:
    """A query that compiles and defines a projection; else `invalid_request` with the
    JavaScript error and its line in `details`."""
    if not query.strip():
        raise InvalidRequest("query must not be empty", field="query")
    if len(query.encode()) > MAX_QUERY_BYTES:
        raise InvalidRequest(f"query must be at most {MAX_QUERY_BYTES} bytes", field="query")
    try:
        Isolate.compile(query, emit_enabled=emit_enabled).close()
    except QueryError as e:
        raise InvalidRequest(
            f"the query does not compile: {e.message}",
            field="query",
            error=e.message,
            line=e.line,
        ) from e
    return query


class ProjectionApi:
    """Every `projection_*` operation for every store of one node."""

    def __init__(
        self, stores: StoreSource, submit: SubmitOps, catch_up: CatchUp, *, timeout_ms: int
    ) -> None:
        self._stores = stores
        self._submit = submit
        self._catch_up = catch_up
        self._timeout_ms = timeout_ms

    def operations(self) -> dict[str, tuple[type[Any], Answer]]:
        """Each public operation's request type and the method that answers it."""
        return {
            Op.PROJECTION_CREATE: (ProjectionCreateRequest, self.create),
            Op.PROJECTION_UPDATE: (ProjectionUpdateRequest, self.update),
            Op.PROJECTION_DELETE: (ProjectionNameRequest, self.delete),
            Op.PROJECTION_ENABLE: (ProjectionNameRequest, self.enable),
            Op.PROJECTION_DISABLE: (ProjectionNameRequest, self.disable),
            Op.PROJECTION_RESET: (ProjectionNameRequest, self.reset),
            Op.PROJECTION_LIST: (ProjectionListRequest, self.list_all),
            Op.PROJECTION_INFO: (ProjectionNameRequest, self.info),
            Op.PROJECTION_STATE: (ProjectionStateRequest, self.state),
            Op.PROJECTION_RESULT: (ProjectionStateRequest, self.result),
            Op.PROJECTION_PARTITIONS: (ProjectionPartitionsRequest, self.partitions),
            Op.PROJECTION_RESTORE: (ProjectionRestoreRequest, self.restore),
        }

    async def _reader(self, store: str, deadline: Deadline) -> StoreReader:
        await self._catch_up(deadline.left())
        return self._stores(store)

    def _deadline(self, timeout_ms: int | None) -> Deadline:
        return Deadline(timeout_ms, self._timeout_ms)

    async def create(
        self, store: str, request: ProjectionCreateRequest, codec: Codec
    ) -> ProjectionInfo:
        """Define a projection; it starts at the store's first event or at its end."""
        name = check_name(request.name)
        if request.start not in (START_AT_START, START_AT_END):
            raise InvalidRequest(
                f"start must be {START_AT_START!r} or {START_AT_END!r}", field="start"
            )
        deadline = self._deadline(request.timeout_ms)
        query = await asyncio.to_thread(check_query, request.query, request.emit_enabled)
        reader = await self._reader(store, deadline)
        if _record(reader, name) is not None:
            raise AlreadyExists(f"projection {name!r} already exists", field="name", name=name)
        start = reader.last_position() if request.start == START_AT_END else 0
        op = ProjectionDefineOp(
            store,
            name,
            PROJECTION_CREATE,
            query=query,
            emit_enabled=request.emit_enabled,
            enabled=request.enabled,
            start_position=start,
        )
        return await self._define(store, op, deadline)

    async def update(
        self, store: str, request: ProjectionUpdateRequest, codec: Codec
    ) -> ProjectionInfo:
        """A new query and/or `emit_enabled`; the state and checkpoint stay."""
        name = check_name(request.name)
        if request.query is None and request.emit_enabled is None:
            raise InvalidRequest("give query and/or emit_enabled", field="query")
        deadline = self._deadline(request.timeout_ms)
        current = _existing(await self._reader(store, deadline), name)
        emit_enabled = (
            current.emit_enabled if request.emit_enabled is None else request.emit_enabled
        )
        if request.query is not None:
            await asyncio.to_thread(check_query, request.query, emit_enabled)
        op = ProjectionDefineOp(
            store, name, PROJECTION_UPDATE, query=request.query, emit_enabled=request.emit_enabled
        )
        return await self._define(store, op, deadline)

    async def enable(
        self, store: str, request: ProjectionNameRequest, codec: Codec
    ) -> ProjectionInfo:
        """Run it (again, after a fault: from where it stopped)."""
        return await self._action(store, request, PROJECTION_ENABLE)

    async def disable(
        self, store: str, request: ProjectionNameRequest, codec: Codec
    ) -> ProjectionInfo:
        """Stop it where it is."""
        return await self._action(store, request, PROJECTION_DISABLE)

    async def reset(
        self, store: str, request: ProjectionNameRequest, codec: Codec
    ) -> ProjectionInfo:
        """Clear its states and checkpoint: it starts again from the store's first event.
        What it emitted stays."""
        return await self._action(store, request, PROJECTION_RESET)

    async def delete(
        self, store: str, request: ProjectionNameRequest, codec: Codec
    ) -> ProjectionDeleted:
        """Remove it and its states; what it emitted stays."""
        name = check_name(request.name)
        deadline = self._deadline(request.timeout_ms)
        _existing(await self._reader(store, deadline), name)
        await self._submit([ProjectionDefineOp(store, name, PROJECTION_DELETE)], deadline.left())
        return ProjectionDeleted(name=name)

    async def _action(
        self, store: str, request: ProjectionNameRequest, action: str
    ) -> ProjectionInfo:
        name = check_name(request.name)
        deadline = self._deadline(request.timeout_ms)
        _existing(await self._reader(store, deadline), name)
        return await self._define(store, ProjectionDefineOp(store, name, action), deadline)

    async def _define(
        self, store: str, op: ProjectionDefineOp, deadline: Deadline
    ) -> ProjectionInfo:
        await self._submit([op], deadline.left())
        reader = await self._reader(store, deadline)
        return projection_info(op.name, _existing(reader, op.name), reader.last_position())

    async def list_all(
        self, store: str, request: ProjectionListRequest, codec: Codec
    ) -> ProjectionList:
        """Every projection of the store."""
        reader = await self._reader(store, self._deadline(request.timeout_ms))
        last = reader.last_position()
        found = stored_projections(reader)
        return ProjectionList(
            projections=[projection_info(n, found[n], last) for n in sorted(found)]
        )

    async def info(
        self, store: str, request: ProjectionNameRequest, codec: Codec
    ) -> ProjectionInfo:
        """One projection's definition and progress."""
        name = check_name(request.name)
        reader = await self._reader(store, self._deadline(request.timeout_ms))
        return projection_info(name, _existing(reader, name), reader.last_position())

    async def state(
        self, store: str, request: ProjectionStateRequest, codec: Codec
    ) -> ProjectionStateOut:
        """A partition's state, or the shared one."""
        name, partition, state, _ = await self._partition(store, request)
        return ProjectionStateOut(name=name, partition=partition, state=state)

    async def result(
        self, store: str, request: ProjectionStateRequest, codec: Codec
    ) -> ProjectionResultOut:
        """A partition's result (its state through `transformBy`/`filterBy`)."""
        name, partition, _, result = await self._partition(store, request)
        return ProjectionResultOut(name=name, partition=partition, result=result)

    async def partitions(
        self, store: str, request: ProjectionPartitionsRequest, codec: Codec
    ) -> ProjectionPartitions:
        """A page of its partitions, each with its state and result."""
        name = check_name(request.name)
        reader = await self._reader(store, self._deadline(request.timeout_ms))
        _existing(reader, name)
        return partition_page(reader, name, request.after, request.limit)

    async def restore(
        self, store: str, request: ProjectionRestoreRequest, codec: Codec
    ) -> ProjectionInfo:
        """`_sys.projection_restore`: create it as an export saw it (`AlreadyExists` if the
        store has one of that name)."""
        name = check_name(request.name)
        deadline = self._deadline(request.timeout_ms)
        await asyncio.to_thread(check_query, request.query, request.emit_enabled)
        reader = await self._reader(store, deadline)
        if _record(reader, name) is not None:
            raise AlreadyExists(f"projection {name!r} already exists", field="name", name=name)
        await self._submit([restore_op(store, request, reader.last_position())], deadline.left())
        reader = await self._reader(store, deadline)
        return projection_info(name, _existing(reader, name), reader.last_position())

    async def _partition(
        self, store: str, request: ProjectionStateRequest
    ) -> tuple[str, str, Any, Any]:
        name = check_name(request.name)
        partition = SHARED_PARTITION if request.partition is None else request.partition
        reader = await self._reader(store, self._deadline(request.timeout_ms))
        _existing(reader, name)
        key = item_keys.partition_key(name, partition)
        raw = reader.get_item(item_keys.PROJECTIONS, key)
        if raw is None:
            if request.partition is not None:
                raise NotFound(
                    f"projection {name!r} has no partition {partition!r}",
                    field="partition",
                    partition=partition,
                )
            return name, partition, None, None
        stored = stored_partition_decoder.decode(raw)
        return name, partition, json_value(stored.state), json_value(stored.result)


def _record(reader: StoreReader, name: str) -> StoredProjection | None:
    raw = reader.get_item(item_keys.PROJECTIONS, item_keys.projection_key(name))
    return None if raw is None else stored_projection_decoder.decode(raw)


def _existing(reader: StoreReader, name: str) -> StoredProjection:
    record = _record(reader, name)
    if record is None:
        raise NotFound(f"no projection {name!r}", field="name", name=name)
    return record


def projection_info(name: str, record: StoredProjection, last_position: int) -> ProjectionInfo:
    """The public view of a stored projection, `last_position` being the store's."""
    return ProjectionInfo(
        name=name,
        status=projection_status(record),
        reason=record.reason,
        position=record.checkpoint,
        lag=max(0, last_position - record.checkpoint),
        events_processed=record.processed,
        events_emitted=record.emitted,
        partitions=record.partitions,
        enabled=record.enabled,
        emit_enabled=record.emit_enabled,
        query=record.query,
        fault_position=record.fault_position if record.reason else None,
        epoch=record.epoch,
    )
