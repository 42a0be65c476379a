"""The eventsourcing library's recorders on esdb streams.

Every originator has its own stream, and its events take consecutive stream versions: the
stream version of an event is its `originator_version` minus the stream's *base* (the
`originator_version` of its first event: 1 for the library's aggregates, 0 for sequences that
start at 0). So a new event's place is an expected version, and esdb's optimistic
concurrency is the library's uniqueness of (originator_id, originator_version): an insert
whose versions are taken (or would leave a gap) fails with `wrong_expected_version`, raised as
`IntegrityError`. Bases are learnt from every read and write, so a write needs no extra read
once the aggregate was loaded or written by this process.

Notification ids are the events' global positions in the store. Tracking records are events
of one stream per upstream application (`_tracking-<name>`), written in the same
`append_multi` as the events they come with, at the tracking stream's expected version: all
or nothing, and only one of two concurrent writers of the same record succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DataError,
    IntegrityError,
    Notification,
    ProcessRecorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)

from esdb.client import (
    AppendResult,
    AppendSpec,
    EsdbError,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamDeletedError,
    StreamNotFoundError,
    WrongExpectedVersionError,
)
from esdb.eventsourcing.datastore import NO_TRACKING, PAGE_SIZE, EsdbDatastore, TrackingHead
from esdb.eventsourcing.errors import persistence_error, translated
from esdb.eventsourcing.mapping import (
    event_metadata,
    is_tracking,
    new_event,
    notifications,
    notifications_filter,
    stored_event,
    stream_of,
    tracked_id,
    tracking_event,
    tracking_stream,
)
from esdb.eventsourcing.subscription import EsdbSubscription

log = logging.getLogger(__name__)

TRACKING_KEEP = 100
"""Tracking records kept per tracking stream (its `max_count`): only the last one is ever
read, and the scavenger removes the rest."""

_MAX_ATTEMPTS = 10


@dataclass(slots=True)
class _StreamAppend:
    """One originator's part of an insert: its events in version order, and where they go."""

    stream: str
    stored: list[StoredEvent]
    events: list[NewEvent]
    expected: ExpectedVersion
    guessed: bool
    """Whether `expected` assumes a new stream without knowing it is one."""


class EsdbRecorder:
    """What every esdb recorder shares: the store's connection, reads of stream bases and
    tracking heads, and the one write path."""

    def __init__(self, datastore: EsdbDatastore) -> None:
        self.datastore = datastore
        self.client = datastore.client

    # Writes

    def _append(self, stored_events: Sequence[StoredEvent], tracking: Tracking | None) -> list[int]:
        """Write events (and a tracking record) atomically; their notification ids, in the
        order of `stored_events`."""
        appends = self._stream_appends(stored_events)
        if not appends and tracking is None:
            return []
        tracked = None if tracking is None else tracking_stream(tracking.application_name)
        for _ in range(_MAX_ATTEMPTS):
            specs = [AppendSpec(a.stream, a.events, expected_version=a.expected) for a in appends]
            if tracking is not None and tracked is not None:
                specs.append(self._tracking_spec(tracked, tracking))
            try:
                results = self._send(specs)
            except WrongExpectedVersionError as e:
                if e.stream is not None and e.stream == tracked:
                    # Another writer moved the tracking stream: check the record against its
                    # new head and try again.
                    self.datastore.learn_tracking_head(e.stream, None)
                    continue
                guessed = next((a for a in appends if a.stream == e.stream and a.guessed), None)
                if guessed is None:
                    raise IntegrityError(str(e)) from e
                self._settle(guessed)
                continue
            except EsdbError as e:
                raise persistence_error(e) from e
            return self._recorded(stored_events, appends, results, tracking, tracked)
        msg = f"gave up writing after {_MAX_ATTEMPTS} conflicting attempts"
        raise IntegrityError(msg)

    def _stream_appends(self, stored_events: Sequence[StoredEvent]) -> list[_StreamAppend]:
        by_stream: dict[str, list[StoredEvent]] = {}
        for stored in stored_events:
            by_stream.setdefault(stream_of(stored.originator_id), []).append(stored)
        appends: list[_StreamAppend] = []
        for stream, events in by_stream.items():
            if is_tracking(stream):
                msg = f"originator id {stream!r} is reserved for tracking records"
                raise DataError(msg)
            events.sort(key=lambda stored: stored.originator_version)
            versions = [stored.originator_version for stored in events]
            if len(set(versions)) < len(versions):
                msg = f"Stored events are not unique: {events}"
                raise IntegrityError(msg)
            if versions[-1] - versions[0] != len(versions) - 1:
                msg = f"Stored events of {stream!r} leave gaps between versions {versions}"
                raise IntegrityError(msg)
            append = _StreamAppend(
                stream, events, [new_event(e) for e in events], "no_stream", guessed=True
            )
            base = self.datastore.base(stream)
            if base is not None or versions[0] > 1:
                # Versions 0 and 1 usually start a new aggregate: assume so, and learn
                # otherwise from a conflict. Later versions are placed by the base.
                self._settle(append, base)
            appends.append(append)
        return appends

    def _settle(self, append: _StreamAppend, base: int | None = None) -> None:
        """Place `append` by its stream's base (read now unless given)."""
        if base is None:
            with translated():
                base = self._read_base(append.stream)
        append.guessed = False
        if base is None:
            append.expected = "no_stream"
            return
        expected = append.stored[0].originator_version - base - 1
        if expected < -1:
            msg = (
                f"Stored event version {append.stored[0].originator_version} is below "
                f"the first version {base} of {append.stream!r}"
            )
            raise IntegrityError(msg)
        append.expected = "no_stream" if expected == -1 else expected

    def _tracking_spec(self, stream: str, tracking: Tracking) -> AppendSpec:
        head = self.datastore.tracking_head(stream)
        if head is None:
            with translated():
                head = self._read_tracking_head(stream)
        if head.notification_id is not None and tracking.notification_id <= head.notification_id:
            msg = (
                f"Tracking notification ID {tracking.notification_id} not greater than "
                f"current max tracking ID {head.notification_id}"
            )
            raise IntegrityError(msg)
        return AppendSpec(
            stream, [tracking_event(tracking)], expected_version=_expected(head.version)
        )

    def _send(self, specs: list[AppendSpec]) -> list[AppendResult]:
        if len(specs) == 1:
            spec = specs[0]
            return [
                self.client.append(spec.stream, spec.events, expected_version=spec.expected_version)
            ]
        return self.client.append_multi(specs)

    def _recorded(
        self,
        stored_events: Sequence[StoredEvent],
        appends: list[_StreamAppend],
        results: list[AppendResult],
        tracking: Tracking | None,
        tracked: str | None,
    ) -> list[int]:
        ids: dict[tuple[str, int], int] = {}
        for append, result in zip(appends, results, strict=False):
            first = append.stored[0].originator_version
            self.datastore.learn_base(append.stream, first - result.first_version)
            for offset, stored in enumerate(append.stored):
                ids[append.stream, stored.originator_version] = result.first_position + offset
        self.datastore.saw(max(result.last_position for result in results))
        if tracking is not None and tracked is not None:
            result = results[-1]
            head = TrackingHead(result.last_version, tracking.notification_id)
            self.datastore.learn_tracking_head(tracked, head)
            if result.first_version == 0:
                self._bound_tracking(tracked)
        return [ids[stream_of(e.originator_id), e.originator_version] for e in stored_events]

    def _bound_tracking(self, stream: str) -> None:
        """Keep a new tracking stream short. Best effort: the record is already written, so
        a failure here must not look like a failed insert."""
        try:
            self.client.set_stream_metadata(stream, {"max_count": TRACKING_KEEP})
        except EsdbError as e:
            log.warning("could not set max_count on tracking stream %r: %s", stream, e)

    # Reads

    def _read_base(self, stream: str) -> int | None:
        """The base of a stream from its first event; None when it has no events."""
        try:
            page = self.client.read_stream(
                stream, limit=1, min_position=self.datastore.min_position
            )
        except StreamNotFoundError:
            return None
        if not page.events:
            return None
        return self._learn_base(page.events[0])

    def _learn_base(self, event: RecordedEvent) -> int:
        base = event_metadata(event).originator_version - event.version
        self.datastore.learn_base(event.stream_id, base)
        return base

    def _read_tracking_head(self, stream: str) -> TrackingHead:
        try:
            page = self.client.read_stream(
                stream,
                from_="end",
                direction="backward",
                limit=1,
                min_position=self.datastore.min_position,
            )
        except StreamNotFoundError:
            return NO_TRACKING
        if not page.events:
            return NO_TRACKING
        event = page.events[0]
        head = TrackingHead(event.version, tracked_id(event))
        self.datastore.learn_tracking_head(stream, head)
        return head


class EsdbAggregateRecorder(EsdbRecorder, AggregateRecorder):
    """Stored events in one esdb stream per originator."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        self._append(stored_events, None)
        return None

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        stream = stream_of(originator_id)
        try:
            events = self._select(stream, gt=gt, lte=lte, desc=desc, limit=limit)
        except (StreamNotFoundError, StreamDeletedError):
            return []  # no events, or a tombstoned stream: the aggregate is gone
        except EsdbError as e:
            raise persistence_error(e) from e
        return [stored_event(event, originator_id) for event in events]

    def _select(
        self, stream: str, *, gt: int | None, lte: int | None, desc: bool, limit: int | None
    ) -> list[RecordedEvent]:
        # The selected events are at stream versions `low` to `high` (None: the last).
        low, high = 0, None
        if gt is not None or lte is not None:
            base = self.datastore.base(stream)
            if base is None:
                base = self._read_base(stream)
                if base is None:
                    return []
            if gt is not None:
                low = max(gt + 1 - base, 0)
            if lte is not None:
                high = lte - base
                if high < low:
                    return []
        selected: list[RecordedEvent] = []
        start: int | Literal["end"] = low
        if desc:
            start = "end" if high is None else high
        while limit is None or len(selected) < limit:
            size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(selected))
            if not desc and high is not None:
                size = min(size, high - int(start) + 1)
            elif desc and start != "end":
                size = min(size, int(start) - low + 1)
            page = self.client.read_stream(
                stream,
                from_=start,
                direction="backward" if desc else "forward",
                limit=max(size, 1),
                min_position=self.datastore.min_position,
            )
            inside = [
                event
                for event in page.events
                if low <= event.version and (high is None or event.version <= high)
            ]
            selected.extend(inside[: None if limit is None else limit - len(selected)])
            if page.next is None or len(inside) < len(page.events):
                break
            start = page.next
        if selected:
            self._learn_base(selected[0])
            # A stream's positions rise with its versions: the highest is at one end.
            self.datastore.saw(max(selected[0].position, selected[-1].position))
        return selected


class EsdbApplicationRecorder(EsdbAggregateRecorder, ApplicationRecorder):
    """Stored events in streams, and the store's global log as the application sequence:
    notification ids are positions."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        return self._append(stored_events, None)

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        first = 1 if start is None else start if inclusive_of_start else start + 1
        position = max(first, 1)
        flt = notifications_filter(tuple(topics))
        selected: list[Notification] = []
        with translated():
            while len(selected) < limit and (stop is None or position <= stop):
                wanted = min(PAGE_SIZE, limit - len(selected))
                if stop is not None:
                    # Positions are dense: no more than this many can match before `stop`.
                    wanted = min(wanted, stop - position + 1)
                page = self.client.read_all_compact(
                    from_position=position,
                    limit=wanted,
                    filter=flt,
                    min_position=self.datastore.min_position,
                )
                records = page.records
                if stop is not None and records and records[-1].position > stop:
                    selected.extend(notifications(r for r in records if r.position <= stop))
                    return selected
                selected.extend(notifications(records))
                if page.next_position is None:
                    break
                position = page.next_position
        return selected

    def max_notification_id(self) -> int | None:
        flt = notifications_filter(())
        position: int | Literal["end"] | None = "end"
        with translated():
            while position is not None:
                page = self.client.read_all_compact(
                    from_position=position,
                    direction="backward",
                    limit=1,
                    filter=flt,
                    min_position=self.datastore.min_position,
                )
                if page.records:
                    return page.records[0].position
                position = page.next_position  # only tracking records scanned so far
        return None

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return EsdbSubscription(self, gt=gt, topics=topics)


class EsdbTrackingRecorder(EsdbRecorder, TrackingRecorder):
    """Tracking records as events of one stream per upstream application."""

    def insert_tracking(self, tracking: Tracking) -> None:
        self._append([], tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        with translated():
            return self._read_tracking_head(tracking_stream(application_name)).notification_id


class EsdbProcessRecorder(EsdbTrackingRecorder, EsdbApplicationRecorder, ProcessRecorder):
    """Events and the tracking record of the notification they were made from, written in
    one multi-stream append."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        tracking: Tracking | None = kwargs.get("tracking")
        return self._append(stored_events, tracking)


def _expected(version: int) -> ExpectedVersion:
    return "no_stream" if version < 0 else version
