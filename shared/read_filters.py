"""`read_all` filters compiled to one predicate over stored events."""

from __future__ import annotations

import re
from functools import lru_cache

from esdb.contracts.api import ReadFilter
from esdb.shared.storage.port import Predicate
from esdb.shared.storage.records import EventRecord


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def compile_filter(flt: ReadFilter | None) -> Predicate | None:
    """A predicate that holds when every condition of `flt` holds; None for no filter."""
    if flt is None:
        return None
    checks: list[Predicate] = []
    if flt.event_types is not None:
        types = frozenset(flt.event_types)
        checks.append(lambda r: r.type in types)
    if flt.event_type_prefix is not None:
        type_prefix = flt.event_type_prefix
        checks.append(lambda r: r.type.startswith(type_prefix))
    if flt.stream_prefix is not None:
        stream_prefix = flt.stream_prefix
        checks.append(lambda r: r.stream.startswith(stream_prefix))
    if flt.category is not None:
        category = flt.category
        checks.append(lambda r: r.category == category)
    if flt.event_type_regex is not None:
        type_regex = _regex(flt.event_type_regex)
        checks.append(lambda r: type_regex.search(r.type) is not None)
    if flt.stream_regex is not None:
        stream_regex = _regex(flt.stream_regex)
        checks.append(lambda r: stream_regex.search(r.stream) is not None)
    if not checks:
        return None

    def predicate(record: EventRecord) -> bool:
        return all(check(record) for check in checks)

    return predicate
