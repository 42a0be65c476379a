"""Payload filters of `by_event_payload` subscriptions (contract): conditions on a field path of
an event's JSON data (`equals`, `in`, `range`, `exists`), all of which must hold.

`compile_payload_filter` validates a condition list once and returns a predicate over raw event
data. Rejections are `InvalidRequest` whose `field` names the offending part, e.g.
`payload[2].range` or `payload[0].path[1]`. Semantics are described in docs/payload-filters.md.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, Final

import msgspec

from esdb.contracts.errors import InvalidRequest

MAX_PAYLOAD_CONDITIONS = 32

Bound = int | float | str


class PayloadRange(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """Bounds on a value; all given bounds must hold. Numbers or strings, not both."""

    gt: Bound | None = None
    gte: Bound | None = None
    lt: Bound | None = None
    lte: Bound | None = None


class PayloadCondition(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One test on the value at `path`; exactly one of `equals`, `in`, `range`, `exists`.

    `path` is dotted (`"order.lines.0.sku"`, where a token of digits also indexes a list) or a
    token list (`["a.b", 0]`: strings are object keys only, integers list indexes only)."""

    path: str | list[str | int]
    # UNSET, not None, marks "not given": `"equals": null` tests for JSON null.
    equals: Any = msgspec.UNSET
    in_: list[Any] | None = msgspec.field(default=None, name="in")
    range: PayloadRange | None = None
    exists: bool | None = None


PayloadFilter = list[PayloadCondition]
"""All conditions must hold (AND)."""

PayloadPredicate = Callable[[bytes], bool]
"""True when an event's raw data is JSON satisfying every condition."""

_Step = tuple[str | None, int | None]
"""One path token as (object key, list index); None where the token cannot apply."""

_Check = Callable[[Any], bool]

_MISSING: Final = object()
_decoder = msgspec.json.Decoder()
_COMPARE: Final = (
    ("gt", operator.gt),
    ("gte", operator.ge),
    ("lt", operator.lt),
    ("lte", operator.le),
)


def compile_payload_filter(
    conditions: list[PayloadCondition], field: str = "payload"
) -> PayloadPredicate:
    """A predicate over raw event data, after checking `conditions` (fields named under `field`)."""
    if not conditions:
        raise InvalidRequest("a payload filter needs at least one condition", field=field)
    if len(conditions) > MAX_PAYLOAD_CONDITIONS:
        raise InvalidRequest(
            f"{len(conditions)} payload conditions; the limit is {MAX_PAYLOAD_CONDITIONS}",
            field=field,
        )
    checks = tuple(_condition(c, f"{field}[{i}]") for i, c in enumerate(conditions))

    def matches(data: bytes) -> bool:
        try:
            document = _decoder.decode(data)
        except msgspec.DecodeError:
            # A filter on JSON data selects JSON events; even `exists: false` skips the rest.
            return False
        return all(check(document) for check in checks)

    return matches


def _condition(condition: PayloadCondition, field: str) -> _Check:
    steps = _path(condition.path, f"{field}.path")
    given = [
        name
        for name, present in (
            ("equals", condition.equals is not msgspec.UNSET),
            ("in", condition.in_ is not None),
            ("range", condition.range is not None),
            ("exists", condition.exists is not None),
        )
        if present
    ]
    if len(given) != 1:
        got = ", ".join(given) or "none"
        raise InvalidRequest(
            f"a condition needs exactly one of equals, in, range, exists; got {got}", field=field
        )
    if condition.range is not None:
        return _range_check(steps, condition.range, f"{field}.range")
    if condition.in_ is not None:
        return _in_check(steps, condition.in_, f"{field}.in")
    if condition.exists is not None:
        return _exists_check(steps, condition.exists, f"{field}.exists")
    return _equals_check(steps, condition.equals)


def _path(path: object, field: str) -> tuple[_Step, ...]:
    if isinstance(path, str):
        if not path:
            raise InvalidRequest("path must not be empty", field=field)
        tokens = path.split(".")
        if not all(tokens):
            raise InvalidRequest(
                f"path {path!r} has an empty token; use a token list for keys with dots",
                field=field,
            )
        return tuple((t, int(t) if t.isascii() and t.isdigit() else None) for t in tokens)
    if not isinstance(path, list):
        raise InvalidRequest("path must be a dotted string or a list of tokens", field=field)
    if not path:
        raise InvalidRequest("path must not be empty", field=field)
    steps: list[_Step] = []
    for i, token in enumerate(path):
        if isinstance(token, str) and token:
            steps.append((token, None))
        elif isinstance(token, int) and not isinstance(token, bool) and token >= 0:
            steps.append((None, token))
        else:
            raise InvalidRequest(
                "a path token must be a non-empty string or an integer >= 0",
                field=f"{field}[{i}]",
            )
    return tuple(steps)


def _resolve(document: Any, steps: tuple[_Step, ...]) -> Any:
    """The value at `steps`, or `_MISSING`."""
    value = document
    for key, index in steps:
        if type(value) is dict:
            if key is None:
                return _MISSING
            value = value.get(key, _MISSING)
            if value is _MISSING:
                return _MISSING
        elif type(value) is list:
            if index is None or index >= len(value):
                return _MISSING
            value = value[index]
        else:
            return _MISSING
    return value


def _scalar_key(value: Any) -> tuple[str, Any] | None:
    """A hashable key equal for JSON-equal scalars (True is not 1; 1 is 1.0); None otherwise."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    if value is None:
        return ("null", None)
    return None


def _json_equal(a: Any, b: Any) -> bool:
    key = _scalar_key(a)
    if key is not None:
        return key == _scalar_key(b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_json_equal, a, b))
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_json_equal(v, b[k]) for k, v in a.items())
        )
    return False


def _equals_check(steps: tuple[_Step, ...], expected: Any) -> _Check:
    expected_key = _scalar_key(expected)
    if expected_key is not None:
        return lambda document: _scalar_key(_resolve(document, steps)) == expected_key
    return lambda document: _json_equal(_resolve(document, steps), expected)


def _in_check(steps: tuple[_Step, ...], values: object, field: str) -> _Check:
    if not isinstance(values, list) or not values:
        raise InvalidRequest("in must be a non-empty list", field=field)
    scalars = frozenset(k for k in map(_scalar_key, values) if k is not None)
    containers = [v for v in values if _scalar_key(v) is None]

    def check(document: Any) -> bool:
        value = _resolve(document, steps)
        key = _scalar_key(value)
        if key is not None:
            return key in scalars
        return value is not _MISSING and any(_json_equal(value, c) for c in containers)

    return check


def _exists_check(steps: tuple[_Step, ...], exists: object, field: str) -> _Check:
    if not isinstance(exists, bool):
        raise InvalidRequest("exists must be true or false", field=field)
    return lambda document: (_resolve(document, steps) is not _MISSING) is exists


def _range_check(steps: tuple[_Step, ...], bounds: PayloadRange, field: str) -> _Check:
    given: list[tuple[Callable[[Any, Any], bool], Bound]] = []
    kinds: set[str] = set()
    for name, compare in _COMPARE:
        bound = getattr(bounds, name)
        if bound is None:
            continue
        if isinstance(bound, str):
            kinds.add("string")
        elif isinstance(bound, int | float) and not isinstance(bound, bool):
            if not math.isfinite(bound):
                raise InvalidRequest(f"{name} must be finite", field=f"{field}.{name}")
            kinds.add("number")
        else:
            raise InvalidRequest(f"{name} must be a number or a string", field=f"{field}.{name}")
        given.append((compare, bound))
    if not given:
        raise InvalidRequest("range needs at least one of gt, gte, lt, lte", field=field)
    if len(kinds) > 1:
        raise InvalidRequest("range bounds must be all numbers or all strings", field=field)
    wants_string = kinds == {"string"}

    def check(document: Any) -> bool:
        value = _resolve(document, steps)
        if wants_string:
            if not isinstance(value, str):
                return False
        elif isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return all(compare(value, bound) for compare, bound in given)

    return check
