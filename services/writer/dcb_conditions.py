"""The leader's check of `dcb_append` conditions, against the applied store and the DCB
events planned ahead of the append (earlier in its batch, or in entries still in flight).

The sequencer plans writes one after another, so a condition sees every event that will land
before its own: of two conflicting decisions in one batch, the second fails."""

from __future__ import annotations

from dataclasses import dataclass

from esdb.contracts.commands import DcbCondition
from esdb.contracts.dcb import matches
from esdb.contracts.errors import AppendConditionFailed
from esdb.contracts.log import AppendOp
from esdb.shared.storage.port import StoreReader


@dataclass(frozen=True, slots=True)
class PlannedDcbEvent:
    """A DCB event planned but perhaps not applied yet."""

    position: int
    type: str
    tags: tuple[str, ...]


def check_condition(
    store: StoreReader, planned: list[PlannedDcbEvent], condition: DcbCondition
) -> None:
    """Raise `AppendConditionFailed` (with the first matching position) if an event after
    `condition.after` matches its items, in the store (through its DCB index) or ahead."""
    found, _ = store.dcb_read(condition.items, condition.after, backward=False, limit=1)
    first = found[0].position if found else None
    after = condition.after or 0
    for event in planned:
        if first is not None and event.position >= first:
            break  # planned in position order: nothing earlier follows
        if event.position > after and matches(condition.items, event.type, event.tags):
            first = event.position
            break
    if first is not None:
        raise AppendConditionFailed(
            f"the append condition failed: the event at position {first} matches it",
            position=first,
        )


def plan_dcb_events(planned: list[PlannedDcbEvent], op: AppendOp) -> None:
    """Note the events of a `$dcb` append, for the conditions planned after it."""
    planned.extend(
        PlannedDcbEvent(op.first_position + offset, event.type, event.tags)
        for offset, event in enumerate(op.events)
    )
