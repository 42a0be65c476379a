"""The aggregator: ExESDB's foldl over tagged values, and the examples in docs/aggregator.md."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from esdb.client import NewEvent, Overwrite, RecordedEvent, Sum, finalize, foldl

DOC = Path(__file__).parents[2] / "docs" / "aggregator.md"


def recorded(
    data: bytes, version: int = 0, content_type: str = "application/json"
) -> RecordedEvent:
    return RecordedEvent(
        event_id=f"00000000-0000-0000-0000-{version:012d}",
        stream_id="account-1",
        version=version,
        position=version + 1,
        event_type="Changed",
        data=data,
        metadata=b"",
        content_type=content_type,
        created=datetime(2024, 1, 1, tzinfo=UTC),
    )


# ---- foldl, as ExESDB's tests pin it down ----


def test_no_events_fold_to_an_empty_state() -> None:
    assert foldl([]) == {}


def test_events_merge_key_by_key_and_untagged_values_overwrite() -> None:
    events: list[dict[str, Any]] = [
        {"name": "John", "age": 30},
        {"location": "New York"},
        {"age": 31},
    ]
    assert foldl(events) == {"name": "John", "age": 31, "location": "New York"}


def test_sums_add_up_and_stay_tagged() -> None:
    assert foldl([{"counter": Sum(5)}, {"counter": Sum(10)}]) == {"counter": Sum(15)}


def test_a_sum_adds_to_a_plain_number() -> None:
    assert foldl([{"counter": 5}, {"counter": Sum(2.5)}]) == {"counter": Sum(7.5)}


@pytest.mark.parametrize("previous", [None, "five", True, [1]])
def test_a_sum_over_no_number_starts_from_zero(previous: object) -> None:
    assert foldl([{"counter": Sum(3)}], initial={"counter": previous}) == {"counter": Sum(3)}


def test_overwrite_replaces_any_value_with_a_plain_one() -> None:
    events: list[dict[str, Any]] = [
        {"name": "John", "counter": Sum(4)},
        {"name": Overwrite("Jane")},
    ]
    assert foldl(events) == {"name": "Jane", "counter": Sum(4)}
    assert foldl([*events, {"counter": Overwrite(1)}])["counter"] == 1


def test_the_initial_state_is_folded_on_and_left_alone() -> None:
    initial = {"name": "John", "counter": 5}
    assert foldl([{"counter": Sum(10)}], initial) == {"name": "John", "counter": Sum(15)}
    assert initial == {"name": "John", "counter": 5}


def test_finalize_strips_the_tags() -> None:
    events = [
        {"name": "John", "counter": 5},
        {"counter": Sum(10), "active": True},
        {"name": Overwrite("Jane"), "location": "New York"},
    ]
    assert finalize(foldl(events)) == {
        "name": "Jane",
        "counter": 15,
        "active": True,
        "location": "New York",
    }


# ---- tags in JSON ----


def test_tags_encode_as_one_key_objects() -> None:
    event = NewEvent("Deposited", {"balance": Sum(5), "by": Overwrite({"id": 1})})
    assert event.data_bytes() == b'{"balance":{"$sum":5},"by":{"$overwrite":{"id":1}}}'


def test_json_tags_in_plain_maps_are_tags() -> None:
    events: list[dict[str, Any]] = [
        {"balance": {"$sum": 5}},
        {"balance": {"$sum": 2}, "by": {"$overwrite": "ada"}},
    ]
    assert foldl(events) == {"balance": Sum(7), "by": "ada"}


def test_only_a_one_key_object_is_a_tag() -> None:
    literal = {"$sum": 5, "note": "x"}
    assert foldl([{"balance": literal}]) == {"balance": literal}


def test_an_overwrite_stores_a_tag_lookalike_literally() -> None:
    assert foldl([{"raw": {"$overwrite": {"$sum": 5}}}]) == {"raw": {"$sum": 5}}


def test_recorded_events_fold_their_json_data() -> None:
    events: list[RecordedEvent | dict[str, Any]] = [
        recorded(NewEvent("Opened", {"owner": "ada", "balance": 0}).data_bytes(), 0),
        recorded(NewEvent("Deposited", {"balance": Sum(50)}).data_bytes(), 1),
        recorded(b"", 2),  # no data: nothing changes
        {"balance": Sum(-20)},
    ]
    assert finalize(foldl(events)) == {"owner": "ada", "balance": 30}


def test_a_tagged_state_survives_a_json_round_trip() -> None:
    state = foldl([{"balance": Sum(35), "owner": "ada"}])
    stored = msgspec.json.decode(msgspec.json.encode(state))
    assert foldl([{"balance": Sum(1)}], initial=stored) == {"balance": Sum(36), "owner": "ada"}


# ---- errors name the event and the key ----


@pytest.mark.parametrize("value", ["5", True, None, [1]])
def test_a_sum_of_no_number_is_an_error(value: object) -> None:
    with pytest.raises(TypeError, match="Sum takes a number"):
        Sum(value)  # type: ignore[arg-type]


def test_a_json_sum_of_no_number_names_the_event_and_key() -> None:
    with pytest.raises(TypeError, match=r"event #1, key 'balance': Sum takes a number"):
        foldl([{}, {"balance": {"$sum": "5"}}])


def test_recorded_data_that_is_not_a_map_names_the_event() -> None:
    with pytest.raises(TypeError, match=r"^event account-1@3: data must be a map"):
        foldl([recorded(b"[1, 2]", 3)])


def test_recorded_data_that_is_not_json_names_the_event() -> None:
    with pytest.raises(TypeError, match=r"^event account-1@4: data is application/octet-stream"):
        foldl([recorded(b"\x00", 4, "application/octet-stream")])


# ---- docs/aggregator.md: its examples run and check themselves ----


def doc_examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), flags=re.DOTALL | re.MULTILINE)


def run_example(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "docs_aggregator"}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace


def test_the_docs_have_examples() -> None:
    assert len(doc_examples()) >= 2


@pytest.mark.parametrize("index", range(len(doc_examples())))
def test_a_docs_example_runs(index: int) -> None:
    run_example(doc_examples()[index])


async def test_the_docs_balance_reads_a_stream_with_a_client() -> None:
    (example,) = [code for code in doc_examples() if "async def balance" in code]
    balance = run_example(example)["balance"]

    class StoredStream:
        async def iter_stream(self, stream: str) -> AsyncIterator[RecordedEvent]:
            assert stream == "account-1"
            for version, data in enumerate([{"balance": 10}, {"balance": Sum(5)}]):
                yield recorded(NewEvent("Changed", data).data_bytes(), version)

    assert await balance(StoredStream(), "account-1") == 15
