"""A persistent group's pattern selector takes exactly the events its pattern names, without
the stream regex that only narrows history reads on the reader."""

from __future__ import annotations

import pytest

from esdb.contracts.subscriptions import SelectorSpec
from esdb.services.subscription.selection import selection_predicate
from tests.builders import record


@pytest.mark.parametrize(
    ("stream", "event_type", "selected"),
    [
        ("a.b", "Placed", True),
        ("a.b", "Paid", True),
        ("a.bc", "Placed", False),
        ("xa.b", "Placed", False),
        ("a-b", "Placed", False),
    ],
)
def test_a_pattern_naming_a_stream_selects_exactly_that_stream(
    stream: str, event_type: str, selected: bool
) -> None:
    predicate = selection_predicate("default", SelectorSpec(pattern="*.a%2Eb.>"))
    assert predicate is not None
    assert predicate(record(stream, 0, 1, event_type)) is selected
