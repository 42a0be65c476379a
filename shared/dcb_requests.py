"""Public DCB requests (`dcb_append`, `dcb_read`) to validated commands and queries; every
rejection names its field. Shared by the writer leader, the readers and the gateway."""

from __future__ import annotations

import msgspec

from esdb.contracts.api import DcbAppendRequest, DcbQueryIn, DcbReadRequest
from esdb.contracts.commands import (
    EXPECT_ANY,
    DcbCondition,
    DcbItem,
    DcbReadQuery,
    StreamAppend,
    WriteRequest,
)
from esdb.contracts.dcb import (
    DCB_STREAM,
    MAX_ITEM_TYPES,
    MAX_QUERY_ITEMS,
    MAX_TAG_BYTES,
    MAX_TAGS,
)
from esdb.contracts.errors import InvalidRequest, TooLarge
from esdb.shared import validation
from esdb.shared.names import CONTROL_CHARACTERS
from esdb.shared.settings import Settings
from esdb.shared.wire import Codec


def check_tags(tags: list[str], field: str) -> tuple[str, ...]:
    """At most `MAX_TAGS` tags, each 1-`MAX_TAG_BYTES` bytes without control characters."""
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"at most {MAX_TAGS} tags, not {len(tags)}", field=field)
    for index, tag in enumerate(tags):
        if not tag or len(tag.encode()) > MAX_TAG_BYTES or CONTROL_CHARACTERS.search(tag):
            raise InvalidRequest(
                f"a tag must be 1-{MAX_TAG_BYTES} bytes without control characters",
                field=f"{field}[{index}]",
            )
    return tuple(tags)


def query_items(query: DcbQueryIn | None, field: str) -> tuple[DcbItem, ...]:
    """A query's validated items (none: every DCB event)."""
    if query is None:
        return ()
    if len(query.items) > MAX_QUERY_ITEMS:
        raise InvalidRequest(
            f"at most {MAX_QUERY_ITEMS} query items, not {len(query.items)}", field=f"{field}.items"
        )
    items = []
    for index, item in enumerate(query.items):
        at = f"{field}.items[{index}]"
        if len(item.types) > MAX_ITEM_TYPES:
            raise InvalidRequest(f"at most {MAX_ITEM_TYPES} types per item", field=f"{at}.types")
        for position, kind in enumerate(item.types):
            validation.check_type(kind, f"{at}.types[{position}]")
        items.append(DcbItem(tuple(item.types), check_tags(item.tags, f"{at}.tags")))
    return tuple(items)


def _after(value: int | None, field: str) -> int | None:
    if value is not None and value < 0:
        raise InvalidRequest(f"{field} must be a position >= 0", field=field)
    return value


def dcb_append_command(
    store: str, request: DcbAppendRequest, codec: Codec, settings: Settings
) -> WriteRequest:
    """A validated `dcb_append`: one append to the store's `$dcb` stream, with its condition."""
    validation.check_timeout(request.timeout_ms, settings)
    if not request.events:
        raise InvalidRequest("events must not be empty", field="events")
    if len(request.events) > settings.max_events_per_append:
        raise TooLarge(
            f"{len(request.events)} events in one append; the limit is "
            f"{settings.max_events_per_append}",
            field="events",
            limit=settings.max_events_per_append,
        )
    events = []
    for index, event in enumerate(request.events):
        field = f"events[{index}]"
        new = validation.event_command(event, codec, field, settings)
        events.append(msgspec.structs.replace(new, tags=check_tags(event.tags, f"{field}.tags")))
    if len({e.event_id for e in events}) != len(events):
        raise InvalidRequest("event ids must be unique within a request", field="events")
    condition = None
    if request.condition is not None:
        condition = DcbCondition(
            query_items(request.condition.fail_if_events_match, "condition.fail_if_events_match"),
            _after(request.condition.after, "condition.after"),
        )
    return WriteRequest(
        store,
        [StreamAppend(DCB_STREAM, EXPECT_ANY, events)],
        fresh_ids=all(e.event_id is None for e in request.events),
        condition=condition,
    )


def dcb_read_query(
    store: str, request: DcbReadRequest, codec: Codec, settings: Settings
) -> DcbReadQuery:
    """A validated `dcb_read`."""
    backward, limit, min_position, wait_ms = validation.read_bounds(
        request.direction, request.limit, request.min_position, request.timeout_ms, settings
    )
    return DcbReadQuery(
        store=store,
        items=query_items(request.query, "query"),
        after=_after(request.after, "after"),
        backward=backward,
        limit=limit,
        min_position=min_position,
        wait_ms=wait_ms,
        codec=codec.value,
    )
