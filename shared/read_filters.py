"""`read_all` filters compiled to one predicate over stored events.

Regexes run on RE2 (google-re2), whose matching time is linear in the text: a tenant's pattern
cannot stall the reader, whatever it is. Python's `re` backtracks: `(a+)+$` against a 35-byte
stream id takes minutes, `a.*a.*a.*a.*b` against a 480-byte one about 11 (benchmarks/README.md)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from operator import attrgetter
from typing import Any

import re2

from esdb.contracts.api import ReadFilter
from esdb.contracts.filter_regexes import excluded_prefix
from esdb.shared.storage.port import Predicate
from esdb.shared.storage.records import EventRecord

MEMO_LIMIT = 10_000  # distinct ids one filter remembers its answer for, within one request


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is the client's error, not the service's log
    options.never_capture = True
    return options


_OPTIONS = _options()


class RegexError(ValueError):
    """A pattern RE2 does not accept."""


@lru_cache(maxsize=256)
def compile_regex(pattern: str) -> Any:
    """`pattern` compiled by RE2; RegexError says why it is refused."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else e
        raise RegexError(reason.decode() if isinstance(reason, bytes) else str(reason)) from e


def regex_matcher(pattern: str) -> Callable[[str], bool]:
    """Whether `pattern` matches anywhere in a value; answers are remembered per value, since
    a page of `$all` meets the same stream ids and event types again and again, and a call
    into RE2 costs several times a dict lookup."""
    regex = compile_regex(pattern)
    seen: dict[str, bool] = {}

    def matches(value: str) -> bool:
        found = seen.get(value)
        if found is None:
            if len(seen) >= MEMO_LIMIT:
                seen.clear()
            found = seen[value] = regex.search(value) is not None
        return found

    return matches


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
        checks.append(_matching(flt.event_type_regex, "type"))
    if flt.stream_regex is not None:
        checks.append(_matching(flt.stream_regex, "stream"))
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]

    def predicate(record: EventRecord) -> bool:
        return all(check(record) for check in checks)

    return predicate


def _matching(pattern: str, field: str) -> Predicate:
    """Whether `pattern` matches a record's `field` (`stream`, `type`): `regex_matcher`, or a
    prefix test where `pattern` is `not_starting_with`'s (the eventsourcing module leaves
    tracking streams out with one on every notification read), the same answers at a
    fraction of the cost, in one call per event."""
    value_of = attrgetter(field)
    prefix = excluded_prefix(pattern)
    if prefix is not None:
        return lambda r: not value_of(r).startswith(prefix)
    matches = regex_matcher(pattern)
    return lambda r: matches(value_of(r))
