"""`_sys.subscription_restore` (an admin's, through `esdb import`): a persistent subscription
put back with its definition, checkpoint and parked events, given in the store's own
positions, as the ops of one log entry."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from esdb.contracts.errors import InvalidRequest
from esdb.contracts.log import CheckpointOp, LogOp, ParkOp, SubscriptionOp
from esdb.contracts.restore import SubscriptionRestoreRequest
from esdb.contracts.subscriptions import (
    MAX_POSITION,
    NAME_PATTERN,
    SubscriptionCreateRequest,
    SubscriptionDefinition,
)
from esdb.services.subscription.selection import selection_predicate
from esdb.shared.storage.port import StoreReader

LIMITS = {
    "message_timeout_ms": (100, 3_600_000),
    "max_retries": (0, 1_000),
    "max_in_flight": (1, 10_000),
}
_encoder = msgspec.msgpack.Encoder()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def check_group(
    store: str, request: SubscriptionCreateRequest | SubscriptionRestoreRequest
) -> None:
    """A group's name, limits and selector, as `subscription_create` takes them."""
    if not NAME_PATTERN.match(request.subscription):
        raise InvalidRequest(
            "subscription names are 1 to 64 letters, digits, '_' or '-'", field="subscription"
        )
    for field, (low, high) in LIMITS.items():
        value = getattr(request, field)
        if not low <= value <= high:
            raise InvalidRequest(
                f"{field} must be between {low} and {high}, not {value}", field=field
            )
    selection_predicate(store, request.selector)  # validates it


def restored_group(
    store: str, request: SubscriptionRestoreRequest, reader: StoreReader
) -> tuple[SubscriptionDefinition, list[LogOp]]:
    """The definition of a restored group and the ops that store it with its checkpoint and
    parked events; positions must be the store's (1 to its last position)."""
    check_group(store, request)
    last = reader.last_position()
    if not 1 <= request.start_position <= MAX_POSITION:
        raise InvalidRequest(f"start_position must be 1 to {MAX_POSITION}", field="start_position")
    if not 0 <= request.checkpoint <= last:
        raise InvalidRequest(
            f"checkpoint must be 0 to the store's last position ({last})", field="checkpoint"
        )
    for index, parked in enumerate(request.parked):
        if parked.parked.tzinfo is None:
            raise InvalidRequest("parked must carry a time zone", field=f"parked[{index}].parked")
        if not 1 <= parked.position <= last:
            raise InvalidRequest(
                f"a parked position must be 1 to the store's last position ({last})",
                field=f"parked[{index}].position",
            )
    definition = new_definition(request, request.start_position)
    by_reason: dict[tuple[str, int], list[int]] = {}
    for parked in request.parked:
        when = (parked.parked - _EPOCH) // _MICROSECOND
        by_reason.setdefault((parked.reason, when), []).append(parked.position)
    ops: list[LogOp] = [SubscriptionOp(store, definition.name, _encoder.encode(definition))]
    ops += [
        ParkOp(store, definition.name, sorted(positions), reason, when)
        for (reason, when), positions in by_reason.items()
    ]
    ops.append(CheckpointOp(store, definition.checkpoint_name, request.checkpoint))
    return definition, ops


def new_definition(
    request: SubscriptionCreateRequest | SubscriptionRestoreRequest, start_position: int
) -> SubscriptionDefinition:
    """A group's definition as a create or a restore asks for it, with a new internal id."""
    return SubscriptionDefinition(
        name=request.subscription,
        selector=request.selector,
        start_position=start_position,
        message_timeout_ms=request.message_timeout_ms,
        max_retries=request.max_retries,
        max_in_flight=request.max_in_flight,
        uid=uuid.uuid4().hex,
        created_us=time.time_ns() // 1000,
        resolve_links=request.resolve_links,
    )
