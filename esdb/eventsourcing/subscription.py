"""`EsdbSubscription`: an application's notifications after a position, then new ones as
they are recorded, from one catch-up subscription of the esdb client (no gap, no duplicate,
recovered across reconnects and leader changes)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from eventsourcing.persistence import Notification, Subscription

from esdb.client import CaughtUp, EsdbError, RecordedEvent
from esdb.client.sync import BlockingIterator
from esdb.eventsourcing.errors import translated
from esdb.eventsourcing.mapping import is_tracking, notification

if TYPE_CHECKING:
    from esdb.eventsourcing.recorders import EsdbApplicationRecorder


class EsdbSubscription(Subscription["EsdbApplicationRecorder"]):
    """Notifications with ids above `gt` (and one of `topics`, when given), blocking for new
    ones; `stop()` (from any thread) ends the iteration.

    One topic is selected by the server (the events' type is their topic); several are
    selected here from all the store's events."""

    def __init__(
        self,
        recorder: EsdbApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._wanted = frozenset(topics)
        selector: dict[str, Any] = {"event_type": topics[0]} if len(topics) == 1 else {"all": True}
        start: int | Literal["start"] = gt + 1 if gt is not None and gt >= 0 else "start"
        with translated():
            self._events: BlockingIterator[RecordedEvent | CaughtUp] = recorder.client.subscribe(
                from_position=start, **selector
            )
        recorder.datastore.opened(self)

    def stop(self) -> None:
        """Stop the subscription: the iteration ends, now or at its next step."""
        super().stop()
        with contextlib.suppress(EsdbError):  # the connection is closing: it ends anyway
            self._events.close()

    def __next__(self) -> Notification:
        while not self._has_been_stopped:
            try:
                with translated():
                    item = next(self._events)
            except StopIteration:
                break
            if isinstance(item, CaughtUp) or is_tracking(item.stream_id):
                continue
            if self._wanted and item.event_type not in self._wanted:
                continue
            found = notification(item)
            if found is not None:
                self._recorder.datastore.saw(item.position)
                return found
        raise StopIteration
