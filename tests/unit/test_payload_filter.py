"""Payload filters: condition decoding, validation naming its field, and matching semantics."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from esdb.contracts.errors import InvalidRequest
from esdb.contracts.payload_filter import (
    MAX_PAYLOAD_CONDITIONS,
    PayloadCondition,
    PayloadFilter,
    PayloadRange,
    compile_payload_filter,
)

ORDER = msgspec.json.encode(
    {
        "order": {
            "id": "o-1",
            "total": 42.5,
            "count": 3,
            "paid": True,
            "note": None,
            "tags": ["rush", "gift"],
            "lines": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
            "a.b": "dotted",
            "0": "zero key",
        }
    }
)


def _matches(data: bytes, **condition: Any) -> bool:
    return compile_payload_filter([PayloadCondition(**condition)])(data)


def _rejection(conditions: list[PayloadCondition], field: str = "payload") -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        compile_payload_filter(conditions, field)
    return caught.value


# Decoding from the wire


def test_a_condition_list_decodes_from_json_with_the_in_key() -> None:
    wire = b"""[
        {"path": "order.id", "equals": "o-1"},
        {"path": ["order", "a.b"], "in": ["dotted", 1]},
        {"path": "order.total", "range": {"gte": 10, "lt": 100.5}},
        {"path": "order.note", "exists": true},
        {"path": "order.note", "equals": null}
    ]"""
    conditions = msgspec.json.decode(wire, type=PayloadFilter)
    assert conditions == [
        PayloadCondition(path="order.id", equals="o-1"),
        PayloadCondition(path=["order", "a.b"], in_=["dotted", 1]),
        PayloadCondition(path="order.total", range=PayloadRange(gte=10, lt=100.5)),
        PayloadCondition(path="order.note", exists=True),
        PayloadCondition(path="order.note", equals=None),
    ]
    assert conditions[0].in_ is None
    assert conditions[3].equals is msgspec.UNSET
    assert compile_payload_filter(conditions)(ORDER)


def test_conditions_encode_only_what_was_given() -> None:
    conditions = [
        PayloadCondition(path="a", equals=None),
        PayloadCondition(path=["b", 0], in_=[1]),
        PayloadCondition(path="c", range=PayloadRange(lt="m")),
    ]
    wire = msgspec.json.encode(conditions)
    assert wire == (
        b'[{"path":"a","equals":null},{"path":["b",0],"in":[1]},{"path":"c","range":{"lt":"m"}}]'
    )
    assert msgspec.json.decode(wire, type=PayloadFilter) == conditions


def test_a_boolean_path_token_is_rejected_by_decoding() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'[{"path": ["a", true], "exists": true}]', type=PayloadFilter)


# equals


@pytest.mark.parametrize(
    ("path", "expected", "matched"),
    [
        ("order.id", "o-1", True),
        ("order.id", "o-2", False),
        ("order.count", 3, True),
        ("order.count", 3.0, True),
        ("order.total", 42.5, True),
        ("order.paid", True, True),
        ("order.paid", 1, False),
        ("order.count", True, False),
        ("order.note", None, True),
        ("order.missing", None, False),
        ("order.id", None, False),
        ("order.tags", ["rush", "gift"], True),
        ("order.tags", ["gift", "rush"], False),
        ("order.lines.0", {"qty": 2.0, "sku": "A-1"}, True),
        ("order.lines.0", {"sku": "A-1"}, False),
        ("order.lines", [{"sku": "A-1", "qty": True}, {"sku": "B-2", "qty": 1}], False),
        ("order.id", ["o-1"], False),
    ],
)
def test_equals_uses_json_equality(path: str, expected: Any, matched: bool) -> None:
    assert _matches(ORDER, path=path, equals=expected) is matched


def test_equals_compares_ints_and_floats_by_value() -> None:
    assert _matches(b'{"n": 1.0}', path="n", equals=1)
    assert _matches(b'{"n": 1}', path="n", equals=1.0)
    assert not _matches(b'{"n": 1.5}', path="n", equals=1)


def test_equals_never_treats_booleans_as_numbers() -> None:
    assert not _matches(b'{"b": true}', path="b", equals=1)
    assert not _matches(b'{"b": false}', path="b", equals=0)
    assert not _matches(b'{"n": 0}', path="n", equals=False)
    assert _matches(b'{"b": false}', path="b", equals=False)


# in


@pytest.mark.parametrize(
    ("path", "values", "matched"),
    [
        ("order.id", ["o-9", "o-1"], True),
        ("order.id", ["o-9"], False),
        ("order.count", [1, 3.0], True),
        ("order.paid", [1], False),
        ("order.paid", [1, True], True),
        ("order.count", [True, "3"], False),
        ("order.note", [None], True),
        ("order.missing", [None], False),
        ("order.tags", [["rush", "gift"], "x"], True),
        ("order.tags", [["rush"]], False),
        ("order.lines.1", [{"sku": "B-2", "qty": 1.0}], True),
        ("order.lines.1", [{"sku": "B-2", "qty": True}], False),
    ],
)
def test_in_matches_any_json_equal_value(path: str, values: list[Any], matched: bool) -> None:
    assert _matches(ORDER, path=path, in_=values) is matched


# range


@pytest.mark.parametrize(
    ("path", "bounds", "matched"),
    [
        ("order.count", PayloadRange(gt=2), True),
        ("order.count", PayloadRange(gt=3), False),
        ("order.count", PayloadRange(gte=3), True),
        ("order.count", PayloadRange(lt=3), False),
        ("order.count", PayloadRange(lte=3.0), True),
        ("order.total", PayloadRange(gte=40, lt=50), True),
        ("order.total", PayloadRange(gt=42.5), False),
        ("order.total", PayloadRange(gte=42.5, lte=42.5), True),
        ("order.id", PayloadRange(gte="o-", lt="o-2"), True),
        ("order.id", PayloadRange(gt="o-1"), False),
        ("order.id", PayloadRange(gt="O"), True),
    ],
)
def test_range_applies_every_given_bound(path: str, bounds: PayloadRange, matched: bool) -> None:
    assert _matches(ORDER, path=path, range=bounds) is matched


@pytest.mark.parametrize(
    ("data", "bounds"),
    [
        (b'{"v": "5"}', PayloadRange(gt=1)),
        (b'{"v": 5}', PayloadRange(gt="1")),
        (b'{"v": true}', PayloadRange(gte=0)),
        (b'{"v": false}', PayloadRange(lt=1)),
        (b'{"v": null}', PayloadRange(lt=1)),
        (b'{"v": [1]}', PayloadRange(gt=0)),
        (b'{"v": {"x": 1}}', PayloadRange(gt=0)),
        (b"{}", PayloadRange(gt=0)),
    ],
)
def test_range_skips_values_of_another_kind(data: bytes, bounds: PayloadRange) -> None:
    assert not _matches(data, path="v", range=bounds)


# exists, missing paths and null


def test_exists_tells_missing_from_null() -> None:
    assert _matches(ORDER, path="order.note", exists=True)
    assert not _matches(ORDER, path="order.note", exists=False)
    assert _matches(ORDER, path="order.nope", exists=False)
    assert not _matches(ORDER, path="order.nope", exists=True)


@pytest.mark.parametrize(
    "path",
    [
        "order.nope",
        "order.id.more",
        "order.tags.2",
        "order.tags.first",
        "order.tags.-1",
        "order.lines.0.sku.x",
        "nothing.at.all",
        ["order", "tags", "0"],
        ["order", "tags", 5],
        ["order", 0],
    ],
)
def test_a_missing_path_fails_every_operator_but_exists_false(path: Any) -> None:
    assert _matches(ORDER, path=path, exists=False)
    assert not _matches(ORDER, path=path, exists=True)
    assert not _matches(ORDER, path=path, equals=None)
    assert not _matches(ORDER, path=path, in_=[None, 0, "", [], {}])
    assert not _matches(ORDER, path=path, range=PayloadRange(gt=-(10**9)))
    assert not _matches(ORDER, path=path, range=PayloadRange(gte=""))


# paths


def test_nested_lists_are_indexed_by_integer_tokens() -> None:
    data = b'{"grid": [[1, 2], [3, [4, {"k": "deep"}]]]}'
    assert _matches(data, path="grid.1.1.1.k", equals="deep")
    assert _matches(data, path=["grid", 1, 1, 0], equals=4)
    assert _matches(data, path="grid.0.1", equals=2)
    assert not _matches(data, path="grid.0.2", exists=True)


def test_a_top_level_list_is_indexed_too() -> None:
    assert _matches(b'[{"a": 1}, {"a": 2}]', path="1.a", equals=2)
    assert _matches(b'[{"a": 1}, {"a": 2}]', path=[0, "a"], equals=1)


def test_a_dotted_path_digit_token_is_also_an_object_key() -> None:
    assert _matches(ORDER, path="order.0", equals="zero key")
    assert _matches(ORDER, path="order.lines.0.sku", equals="A-1")
    assert _matches(ORDER, path="order.lines.01.sku", equals="B-2")


def test_a_token_list_reaches_keys_containing_dots() -> None:
    assert _matches(ORDER, path=["order", "a.b"], equals="dotted")
    assert not _matches(ORDER, path="order.a.b", exists=True)


def test_a_token_list_keeps_keys_and_indexes_apart() -> None:
    assert _matches(ORDER, path=["order", "lines", 1, "sku"], equals="B-2")
    assert not _matches(ORDER, path=["order", "lines", "1", "sku"], exists=True)
    assert not _matches(ORDER, path=["order", 0], exists=True)
    assert _matches(ORDER, path=["order", "0"], equals="zero key")


def test_unicode_digits_do_not_index_lists() -> None:
    assert not _matches(b'{"l": ["x", "y"]}', path="l.\u00b9", exists=True)


# Several conditions, undecodable data


def test_every_condition_must_hold() -> None:
    matches = compile_payload_filter(
        [
            PayloadCondition(path="order.id", equals="o-1"),
            PayloadCondition(path="order.count", range=PayloadRange(gte=1)),
            PayloadCondition(path="order.cancelled", exists=False),
        ]
    )
    assert matches(ORDER)
    assert not matches(msgspec.json.encode({"order": {"id": "o-1", "count": 0}}))
    assert not matches(msgspec.json.encode({"order": {"id": "o-1", "count": 5, "cancelled": 1}}))


@pytest.mark.parametrize(
    "data", [b"", b" ", b"not json", b'{"a": 1', b"\xff\xfe", b"NaN", b"1e400"]
)
def test_undecodable_data_matches_nothing(data: bytes) -> None:
    assert not _matches(data, path="a", exists=False)
    assert not _matches(data, path="a", equals=None)


def test_a_scalar_document_has_no_fields() -> None:
    assert _matches(b"5", path="a", exists=False)
    assert not _matches(b'"text"', path="0", exists=True)


def test_the_predicate_accepts_a_memoryview() -> None:
    matches = compile_payload_filter([PayloadCondition(path="a", equals=1)])
    assert matches(memoryview(b'{"a": 1}'))  # type: ignore[arg-type]


# Validation names the offending field


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        (PayloadCondition(path="a"), "payload[1]"),
        (PayloadCondition(path="a", equals=1, exists=True), "payload[1]"),
        (PayloadCondition(path="a", in_=[1], range=PayloadRange(gt=1)), "payload[1]"),
        (PayloadCondition(path="", exists=True), "payload[1].path"),
        (PayloadCondition(path="a..b", exists=True), "payload[1].path"),
        (PayloadCondition(path=".a", exists=True), "payload[1].path"),
        (PayloadCondition(path="a.", exists=True), "payload[1].path"),
        (PayloadCondition(path=[], exists=True), "payload[1].path"),
        (PayloadCondition(path=["a", ""], exists=True), "payload[1].path[1]"),
        (PayloadCondition(path=["a", -1], exists=True), "payload[1].path[1]"),
        (PayloadCondition(path=["a", "b", True], exists=True), "payload[1].path[2]"),
        (PayloadCondition(path="a", in_=[]), "payload[1].in"),
        (PayloadCondition(path="a", range=PayloadRange()), "payload[1].range"),
        (PayloadCondition(path="a", range=PayloadRange(gt=1, lt="z")), "payload[1].range"),
        (PayloadCondition(path="a", range=PayloadRange(gte="a", lte=2.5)), "payload[1].range"),
        (PayloadCondition(path="a", range=PayloadRange(lt=True)), "payload[1].range.lt"),
        (PayloadCondition(path="a", range=PayloadRange(gt=float("nan"))), "payload[1].range.gt"),
        (PayloadCondition(path="a", range=PayloadRange(lte=float("inf"))), "payload[1].range.lte"),
    ],
)
def test_an_invalid_condition_is_named_by_its_field(
    condition: PayloadCondition, field: str
) -> None:
    valid = PayloadCondition(path="ok", exists=True)
    error = _rejection([valid, condition])
    assert error.details == {"field": field}
    assert error.to_body().code == "invalid_request"


def test_a_wrongly_typed_condition_built_in_python_is_named_too() -> None:
    bad_path: Any = 5
    bad_in: Any = (1, 2)
    bad_exists: Any = "yes"
    assert _rejection([PayloadCondition(path=bad_path, exists=True)]).details == {
        "field": "payload[0].path"
    }
    assert _rejection([PayloadCondition(path="a", in_=bad_in)]).details == {
        "field": "payload[0].in"
    }
    assert _rejection([PayloadCondition(path="a", exists=bad_exists)]).details == {
        "field": "payload[0].exists"
    }


def test_the_field_prefix_is_the_callers() -> None:
    error = _rejection([PayloadCondition(path="a", in_=[])], field="selector.payload")
    assert error.details == {"field": "selector.payload[0].in"}


def test_a_filter_has_one_to_max_conditions() -> None:
    condition = PayloadCondition(path="a", exists=True)
    assert _rejection([]).details == {"field": "payload"}
    assert _rejection([condition] * (MAX_PAYLOAD_CONDITIONS + 1)).details == {"field": "payload"}
    assert compile_payload_filter([condition] * MAX_PAYLOAD_CONDITIONS)(b'{"a": 0}')


def test_decoded_wire_errors_name_their_field() -> None:
    conditions = msgspec.json.decode(
        b'[{"path": "a", "exists": true}, {"path": "b", "in": [], "exists": true}]',
        type=PayloadFilter,
    )
    assert _rejection(conditions).details == {"field": "payload[1]"}
