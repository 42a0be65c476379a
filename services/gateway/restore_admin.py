"""`_sys.store_restore`, `_sys.subscription_restore` and `_sys.projection_restore`: the
admin-only restore writes that `esdb import` uses. They are `_sys` operations, so only the
admin role may send them (docs/security.md); a store restore goes to the writer leader as a
write of its own, a subscription or projection restore to the service that owns it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import msgspec

from esdb.contracts.commands import RestoredStream, StoreRestore, WriteOutcome, WriteRequest
from esdb.contracts.dcb import DCB_STREAM
from esdb.contracts.errors import EsdbError, InvalidRequest, error_from_body
from esdb.contracts.log import SnapshotOp, StampedEvent
from esdb.contracts.restore import (
    NO_FENCE,
    ProjectionRestoreRequest,
    RestoreEvent,
    RestoreSnapshot,
    RestoreStream,
    StoreRestoreRequest,
    StoreRestoreResult,
    SubscriptionRestoreRequest,
)
from esdb.contracts.subjects import PROJECTIONS_SERVICE, SUBSCRIPTIONS_SERVICE, Op
from esdb.services.snapshot import requests as snapshot_requests
from esdb.shared.dcb_requests import check_tags
from esdb.shared.lifecycle import check_metadata
from esdb.shared.names import CONTROL_CHARACTERS, check_store, check_stream
from esdb.shared.restore_shape import check_restore_shape
from esdb.shared.settings import Settings
from esdb.shared.validation import MAX_CONTENT_TYPE_BYTES, MAX_TYPE_BYTES, check_timeout
from esdb.shared.wire import Codec, decode_request, encode

T = TypeVar("T")
_restore_decoder = msgspec.msgpack.Decoder(StoreRestoreRequest)
Write = Callable[[WriteRequest, float], Awaitable[WriteOutcome]]
Forward = Callable[[str, str, str, bytes, Codec], Awaitable[bytes]]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class RestoreAdmin:
    """The restore operations of the gateway."""

    def __init__(self, write: Write, forward: Forward, settings: Settings) -> None:
        self._write = write
        self._forward = forward
        self._settings = settings
        self.handlers: dict[str, Callable[[bytes, Codec], Awaitable[bytes]]] = {
            Op.STORE_RESTORE: self.restore_store,
            Op.SUBSCRIPTION_RESTORE: self.restore_subscription,
            Op.PROJECTION_RESTORE: self.restore_projection,
        }

    async def restore_store(self, data: bytes, codec: Codec) -> bytes:
        """Restore streams and snapshots of a store through the log, all or nothing."""
        request = decode_restore(data, codec)
        command = restore_command(request, self._settings)
        timeout = (request.timeout_ms or self._settings.timeout_ms) / 1000
        outcome = await self._write(WriteRequest(request.store, [], restore=command), timeout)
        if outcome.error is not None:
            raise error_from_body(outcome.error)
        return encode(StoreRestoreResult(results=outcome.results or []), codec)

    async def restore_subscription(self, data: bytes, codec: Codec) -> bytes:
        """Hand a subscription restore to the subscription service (it checks the rest)."""
        return await self._hand_over(
            SUBSCRIPTIONS_SERVICE, Op.SUBSCRIPTION_RESTORE, SubscriptionRestoreRequest, data, codec
        )

    async def restore_projection(self, data: bytes, codec: Codec) -> bytes:
        """Hand a projection restore to the projection service (it checks the rest)."""
        return await self._hand_over(
            PROJECTIONS_SERVICE, Op.PROJECTION_RESTORE, ProjectionRestoreRequest, data, codec
        )

    async def _hand_over(
        self,
        service: str,
        op: str,
        kind: type[SubscriptionRestoreRequest | ProjectionRestoreRequest],
        data: bytes,
        codec: Codec,
    ) -> bytes:
        request = decode_request(data, kind, codec)
        check_store(request.store)
        check_timeout(request.timeout_ms, self._settings)
        return await self._forward(service, request.store, op, data, codec)


def decode_restore(data: bytes, codec: Codec) -> StoreRestoreRequest:
    """A store restore as sent. msgpack, the import's codec, is decoded straight into the
    typed request: the generic decoder's walk over every value for portability cost 68 µs an
    event here, and only stream metadata holds free-form values (`check_metadata` checks
    those). Anything that fails goes through the generic decoder, for its error naming the
    field."""
    if codec is Codec.MSGPACK:
        try:
            return _restore_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
    return decode_request(data, StoreRestoreRequest, codec)


def restore_command(request: StoreRestoreRequest, settings: Settings) -> StoreRestore:
    """The validated writer command of a store restore; every rejection names its field."""
    check_store(request.store)
    check_timeout(request.timeout_ms, settings)
    if request.expected_position < NO_FENCE:
        raise InvalidRequest(
            "expected_position must be a position, or -1 for any", field="expected_position"
        )
    if not request.streams and not request.snapshots:
        raise InvalidRequest("a restore needs streams or snapshots", field="streams")
    streams = [_stream(s, f"streams[{i}]", settings) for i, s in enumerate(request.streams)]
    snapshots = [
        _snapshot(request.store, s, f"snapshots[{i}]", settings)
        for i, s in enumerate(request.snapshots)
    ]
    command = StoreRestore(request.expected_position, streams, snapshots)
    check_restore_shape(command)
    return command


def _stream(item: RestoreStream, where: str, settings: Settings) -> RestoredStream:
    if item.stream != DCB_STREAM:  # the one reserved stream a restore writes
        check_stream(item.stream, f"{where}.stream", settings.max_stream_bytes)
    if len(item.events) > settings.max_events_per_append:
        raise InvalidRequest(
            f"at most {settings.max_events_per_append} events per stream",
            field=f"{where}.events",
        )
    metadata = None
    if item.metadata is not None:
        metadata = _named(lambda: check_metadata(item.metadata or {}), where)
        try:
            msgspec.json.encode(metadata)  # reads answer in JSON too
        except (TypeError, msgspec.EncodeError) as e:
            raise InvalidRequest(
                f"metadata holds a value JSON cannot carry: {e}", field=f"{where}.metadata"
            ) from e
    events = [_event(e, f"{where}.events[{i}]", settings) for i, e in enumerate(item.events)]
    return RestoredStream(
        item.stream,
        item.expected_version,
        item.first_version,
        events,
        item.state,
        item.version,
        metadata,
    )


def _event(event: RestoreEvent, where: str, settings: Settings) -> StampedEvent:
    _check_text(event.event_type, MAX_TYPE_BYTES, f"{where}.event_type")
    _check_text(event.content_type, MAX_CONTENT_TYPE_BYTES, f"{where}.content_type")
    try:
        event_id = uuid.UUID(event.event_id).bytes
    except ValueError as e:
        raise InvalidRequest("event_id must be a UUID", field=f"{where}.event_id") from e
    if len(event.data) + len(event.metadata) > settings.max_event_bytes:
        raise InvalidRequest(
            f"event is over {settings.max_event_bytes} bytes", field=f"{where}.data"
        )
    return StampedEvent(
        event_id,
        event.event_type,
        event.data,
        event.metadata,
        event.content_type,
        _micros(event.created, f"{where}.created"),
        check_tags(event.tags, f"{where}.tags"),
    )


def _snapshot(store: str, item: RestoreSnapshot, where: str, settings: Settings) -> SnapshotOp:
    def checked() -> SnapshotOp:
        snapshot_requests.check_id(item.source_uuid, "source_uuid")
        snapshot_requests.check_id(item.stream_uuid, "stream_uuid")
        snapshot_requests.check_version(item.version)
        snapshot_requests.check_content_type(item.content_type)
        snapshot_requests.check_size(item.data, item.metadata, settings.max_event_bytes)
        return SnapshotOp(
            store,
            item.source_uuid,
            item.stream_uuid,
            item.version,
            item.data,
            item.metadata,
            item.content_type,
            _micros(item.created, "created"),
        )

    return _named(checked, where)


def _named(check: Callable[[], T], where: str) -> T:
    """Run a check whose errors name a field of one item, naming the item too."""
    try:
        return check()
    except EsdbError as e:
        field = e.details.get("field")
        if field is not None:
            e.details["field"] = f"{where}.{field}"
        raise


def _check_text(value: str, limit: int, field: str) -> None:
    if not value or len(value.encode()) > limit or CONTROL_CHARACTERS.search(value):
        raise InvalidRequest(
            f"{field.rpartition('.')[2]} must be 1-{limit} bytes without control characters",
            field=field,
        )


def _micros(moment: datetime, field: str) -> int:
    if moment.tzinfo is None:
        raise InvalidRequest("created must carry a time zone (UTC)", field=field)
    return (moment - _EPOCH) // _MICROSECOND
