"""Fold events into a state map with tagged values: ExESDB's `foldl` and `finalize_map`.

Each event's data is a map merged key by key into the state: `Sum(n)` adds `n` to the key's
number, `Overwrite(v)` and any untagged value replace it. In JSON a tag is a one-key object,
`{"$sum": n}` or `{"$overwrite": v}`, so events read back over the wire carry their tags.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from esdb.client.events import RecordedEvent
from esdb.contracts.api import JSON_CONTENT_TYPE

SUM_KEY = "$sum"
OVERWRITE_KEY = "$overwrite"


class Sum(msgspec.Struct, frozen=True, rename={"value": SUM_KEY}):
    """A number to add to the key's previous number; encodes as `{"$sum": value}`."""

    value: int | float

    def __post_init__(self) -> None:
        if not _is_number(self.value):
            raise TypeError(f"Sum takes a number, not {self.value!r}")


class Overwrite(msgspec.Struct, frozen=True, rename={"value": OVERWRITE_KEY}):
    """A value that replaces the key's previous one; encodes as `{"$overwrite": value}`."""

    value: Any


Event = Mapping[str, Any] | RecordedEvent
"""What `foldl` folds: an event's data map, or a recorded event whose JSON data is one."""


def foldl(events: Iterable[Event], initial: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The state after merging each event's data, oldest first, into `initial`; sums stay
    tagged (`Sum(total)`) so the state can be folded further. `finalize` strips the tags."""
    state: dict[str, Any] = {}
    if initial is not None:
        _merge(state, initial, "the initial state")
    for index, event in enumerate(events):
        if isinstance(event, RecordedEvent):
            _merge(state, _recorded_data(event), f"event {event.stream_id}@{event.version}")
        else:
            _merge(state, event, f"event #{index}")
    return state


def finalize(state: Mapping[str, Any]) -> dict[str, Any]:
    """`state` with every `Sum` and `Overwrite` replaced by its value."""
    return {key: _untagged(value) for key, value in state.items()}


def _merge(state: dict[str, Any], data: object, source: str) -> None:
    if not isinstance(data, Mapping):
        raise TypeError(f"{source}: data must be a map of keys to values, not {data!r}")
    for key, raw in data.items():
        value = _tagged(raw, f"{source}, key {key!r}")
        if isinstance(value, Sum):
            # As in ExESDB, a sum starts from 0 when the key holds no number yet.
            previous = _untagged(state.get(key))
            base = previous if _is_number(previous) else 0
            state[key] = Sum(base + value.value)
        else:
            state[key] = _untagged(value)


def _recorded_data(event: RecordedEvent) -> Any:
    if event.content_type != JSON_CONTENT_TYPE:
        raise TypeError(
            f"event {event.stream_id}@{event.version}: data is {event.content_type}, not JSON"
        )
    data = event.json()
    # An event without data changes nothing.
    return {} if data is None else data


def _tagged(value: Any, where: str) -> Any:
    """`value`, with a JSON tag (`{"$sum": n}` or `{"$overwrite": v}`) as its `Sum`/`Overwrite`."""
    if isinstance(value, dict) and len(value) == 1:
        if SUM_KEY in value:
            try:
                return Sum(value[SUM_KEY])
            except TypeError as e:
                raise TypeError(f"{where}: {e}") from e
        if OVERWRITE_KEY in value:
            return Overwrite(value[OVERWRITE_KEY])
    return value


def _untagged(value: Any) -> Any:
    return value.value if isinstance(value, Sum | Overwrite) else value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
