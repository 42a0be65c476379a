"""The eventsourcing module's "not a tracking stream" filter, without the look-ahead RE2 lacks:
the regex `not_starting_with(p)` builds matches, under RE2, exactly the strings that do not
start with `p`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esdb.contracts.api import ReadFilter
from esdb.contracts.filter_regexes import exactly, excluded_prefix, not_starting_with
from esdb.eventsourcing.mapping import NOT_TRACKING, TRACKING_PREFIX
from esdb.shared.read_filters import compile_filter, regex_matcher
from tests.builders import record

# Prefixes and ids drawn from few characters, so ids often share part of a prefix.
CHARACTERS = st.sampled_from(list("_-tr]^\\[.*é中a"))


@given(prefix=st.text(CHARACTERS, min_size=1, max_size=6), value=st.text(CHARACTERS, max_size=9))
def test_it_matches_exactly_what_does_not_start_with_the_prefix(prefix: str, value: str) -> None:
    assert regex_matcher(not_starting_with(prefix))(value) == (not value.startswith(prefix))


@pytest.mark.parametrize(
    ("stream", "tracking"),
    [
        (TRACKING_PREFIX + "orders", True),
        (TRACKING_PREFIX, True),
        ("_tracking", False),
        ("_trackinG-x", False),
        ("order-1", False),
        ("5a1d0f9e-1b8e-4c1e-9d0a-3f1c2b4e5d6f", False),
    ],
)
def test_tracking_streams_are_the_ones_left_out(stream: str, tracking: bool) -> None:
    assert regex_matcher(NOT_TRACKING)(stream) is not tracking


def test_an_empty_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="empty prefix"):
        not_starting_with("")


@given(prefix=st.text(CHARACTERS, min_size=1, max_size=6))
def test_the_prefix_is_found_again_in_its_regex(prefix: str) -> None:
    assert excluded_prefix(not_starting_with(prefix)) == prefix


@pytest.mark.parametrize(
    "pattern",
    [
        "^abc",
        exactly("_tracking-"),
        not_starting_with("ab") + "x",
        not_starting_with("ab").removeprefix("^"),  # anywhere, not at the start
        "^(?:$|[^a]|a(?:$|[^b]))|x",
        "",
    ],
)
def test_other_regexes_are_not_taken_for_a_prefix(pattern: str) -> None:
    assert excluded_prefix(pattern) is None


@given(prefix=st.text(CHARACTERS, min_size=1, max_size=6), value=st.text(CHARACTERS, max_size=9))
def test_the_prefix_test_answers_as_the_regex(prefix: str, value: str) -> None:
    pattern = not_starting_with(prefix)
    by_stream = compile_filter(ReadFilter(stream_regex=pattern))
    by_type = compile_filter(ReadFilter(event_type_regex=pattern))
    assert by_stream is not None and by_type is not None
    expected = regex_matcher(pattern)(value)
    assert by_stream(record(value, 0, 1)) == expected
    assert by_type(record("s", 0, 1, type=value)) == expected
