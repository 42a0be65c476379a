"""The reader's reply budget: each estimate is an upper bound of what the item really takes in
a reply, in either codec, and a page keeps the longest prefix that fits (never none)."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from esdb.contracts.api import JSON_CONTENT_TYPE, ListStreamsResult, StreamSummary
from esdb.services.reader.reply_size import event_bytes, events_fitting, fitting, stream_bytes
from esdb.shared.storage.records import EventRecord, StreamState
from esdb.shared.wire import Codec, encode, event_out

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


LATEST_CREATED_US = 253_402_300_799_999_999


@st.composite
def records(draw: st.DrawFn) -> EventRecord:
    json_content = draw(st.booleans())
    if json_content:
        data = msgspec.json.encode(draw(JSON_VALUES))
        metadata = msgspec.json.encode(draw(JSON_VALUES))
        content_type = JSON_CONTENT_TYPE
    else:
        data, metadata = draw(st.binary(max_size=300)), draw(st.binary(max_size=40))
        content_type = draw(TEXT)
    return EventRecord(
        event_id=draw(st.binary(min_size=16, max_size=16)),
        stream=draw(TEXT),
        version=draw(st.integers(0, 2**63 - 1)),
        position=draw(st.integers(1, 2**63 - 1)),
        type=draw(TEXT),
        data=data,
        metadata=metadata,
        content_type=content_type,
        # The leader stamps the time of the append: at most the last microsecond of 9999.
        created_us=draw(st.integers(0, LATEST_CREATED_US)),
    )


@given(record=records())
def test_an_event_takes_at_most_its_estimate_in_either_codec(record: EventRecord) -> None:
    for codec in Codec:
        assert len(encode(event_out(record, codec), codec)) <= event_bytes(record)


@given(
    name=TEXT,
    metadata=st.dictionaries(TEXT, JSON_VALUES, max_size=5),
    state=st.sampled_from(["active", "deleted", "tombstoned"]),
)
def test_a_listed_stream_takes_at_most_its_estimate_in_either_codec(
    name: str, metadata: dict[str, object], state: str
) -> None:
    summary = StreamSummary(stream=name, version=7, state=state, metadata=metadata)
    empty = ListStreamsResult(streams=[], next=None)
    for codec in Codec:
        one = ListStreamsResult(streams=[summary], next=None)
        size = len(encode(one, codec)) - len(encode(empty, codec))
        assert size <= stream_bytes((name, StreamState(7, state, metadata)))


def test_a_page_keeps_the_longest_prefix_that_fits_and_never_nothing() -> None:
    sizes = [3, 4, 5, 6]
    assert fitting(sizes, lambda n: n, 12) == [3, 4, 5]
    assert fitting(sizes, lambda n: n, 18) == sizes
    assert fitting(sizes, lambda n: n, 1) == [3]
    assert fitting([], lambda n: n, 1) == []


@given(st.lists(records(), max_size=8), st.integers(1, 4_000))
def test_a_page_of_events_is_cut_where_the_estimates_cut_it(
    page: list[EventRecord], budget: int
) -> None:
    assert list(events_fitting(page, budget)) == list(fitting(page, event_bytes, budget))
