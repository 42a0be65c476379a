"""A subscription's selector as one predicate over stored events."""

from __future__ import annotations

import msgspec

from esdb.contracts.api import JSON_CONTENT_TYPE
from esdb.contracts.payload_filter import compile_payload_filter
from esdb.contracts.selectors import select
from esdb.contracts.subscriptions import SelectorSpec
from esdb.shared.dcb_requests import query_items
from esdb.shared.names import check_stream
from esdb.shared.read_filters import compile_filter
from esdb.shared.storage.port import Predicate
from esdb.shared.storage.records import EventRecord


def selection_predicate(store: str, spec: SelectorSpec) -> Predicate | None:
    """What `spec` selects (None: every event); `InvalidRequest` names a bad field."""
    if spec.stream is not None:
        check_stream(spec.stream, field="selector.stream")
    query = None if spec.query is None else query_items(spec.query, "selector.query")
    selector = select(
        store,
        stream=spec.stream,
        category=spec.category,
        event_type=spec.event_type,
        pattern=spec.pattern,
        all=spec.all,
        query=query,
    )
    checks: list[Predicate] = []
    if selector.stream is not None:
        stream = selector.stream
        checks.append(lambda r: r.stream == stream)
    # A query's own check below is exact: its `$dcb` stream filter is for history reads.
    flt = None if selector.query is not None else selector.filter
    if selector.pattern is not None and flt is not None:
        # `selector.matches` below is exact; the pattern's stream regex only narrows history
        # reads on the reader, so live events need not pay an RE2 call for it.
        flt = msgspec.structs.replace(flt, stream_regex=None)
    by_filter = compile_filter(flt)
    if by_filter is not None:
        checks.append(by_filter)
    if selector.pattern is not None or selector.query is not None:
        checks.append(lambda r: selector.matches(r.stream, r.type, r.tags))
    if spec.payload is not None:
        matches_payload = compile_payload_filter(spec.payload, "selector.payload")
        checks.append(lambda r: r.content_type == JSON_CONTENT_TYPE and matches_payload(r.data))
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]

    def predicate(record: EventRecord) -> bool:
        return all(check(record) for check in checks)

    return predicate
