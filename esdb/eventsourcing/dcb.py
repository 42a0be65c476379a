"""The eventsourcing library's DCB recorder on esdb: `dcb_append` and `dcb_read` of the
factory's store (docs/dcb.md). Positions are the store's global positions; a failed
condition is the library's `IntegrityError`."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

from eventsourcing.dcb.api import (
    DCBAppendCondition,
    DCBEvent,
    DCBQuery,
    DCBReadResponse,
    DCBRecorder,
    DCBSequencedEvent,
)
from eventsourcing.dcb.persistence import DCBListenNotifySubscription
from eventsourcing.dcb.popo import SimpleDCBReadResponse
from eventsourcing.persistence import ProgrammingError

from esdb.client import (
    CaughtUp,
    DcbCondition,
    DcbEvent,
    DcbQuery,
    DcbQueryItem,
    EsdbError,
    RecordedEvent,
    SyncClient,
)
from esdb.client.sync import BlockingIterator
from esdb.eventsourcing.datastore import PAGE_SIZE, EsdbDatastore
from esdb.eventsourcing.errors import persistence_error, translated

BYTES_CONTENT_TYPE = "application/octet-stream"
"""The library's DCB event data is bytes of its own encoding."""


def esdb_query(query: DCBQuery | None) -> DcbQuery | None:
    """The client's form of a library query (None: every DCB event)."""
    if query is None or not query.items:
        return None
    return DcbQuery([DcbQueryItem(list(i.types), list(i.tags)) for i in query.items])


class EsdbDCBRecorder(DCBRecorder):
    """DCB events of one store; reads see this process's own appends on any node."""

    def __init__(self, datastore: EsdbDatastore) -> None:
        self.datastore = datastore

    @property
    def client(self) -> SyncClient:
        """The datastore's blocking client."""
        return self.datastore.client

    def read(
        self,
        query: DCBQuery | None = None,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> DCBReadResponse:
        """Matching events after `after`; `head` is the store's last position without a
        `limit`, else the last event's (None: none), as the library's recorders give it."""
        if limit is not None and limit <= 0:
            return SimpleDCBReadResponse(iter(()), None)
        wanted = esdb_query(query)
        found: list[DCBSequencedEvent] = []
        cursor, head = after, None
        while limit is None or len(found) < limit:
            asked = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(found))
            with translated():
                page = self.client.dcb_read(
                    wanted, after=cursor, limit=asked, min_position=self.datastore.min_position
                )
            head = page.head
            found += (
                DCBSequencedEvent(DCBEvent(e.type, e.data, list(e.tags)), e.position)
                for e in page.events
            )
            if not page.more or not page.events:
                break
            cursor = page.events[-1].position
        if head is not None:
            self.datastore.saw(head)
        if limit is not None:
            head = found[-1].position if found else None
        return SimpleDCBReadResponse(iter(found), head)

    def append(
        self, events: Sequence[DCBEvent], condition: DCBAppendCondition | None = None
    ) -> int:
        """Append `events` unless `condition` fails (`IntegrityError`); the last position."""
        if not events:
            msg = "Should be at least one event. Avoid this elsewhere"
            raise ProgrammingError(msg)
        sent = [
            DcbEvent(e.type, e.data, content_type=BYTES_CONTENT_TYPE, tags=list(e.tags))
            for e in events
        ]
        wanted = None
        if condition is not None:
            query = esdb_query(condition.fail_if_events_match) or DcbQuery()
            wanted = DcbCondition(query, condition.after)
        with translated():
            position = self.client.dcb_append(sent, wanted)
        self.datastore.saw(position)
        return position

    def subscribe(
        self, query: DCBQuery | None = None, *, after: int | None = None
    ) -> EsdbDCBSubscription:
        """Matching events after `after`, then new ones as they are recorded."""
        return EsdbDCBSubscription(self, query=query, after=after)


class EsdbDCBSubscription(DCBListenNotifySubscription[EsdbDCBRecorder]):
    """Reads matching events in pages, and reads again whenever a matching event is appended
    (a live subscription by the same query, opened before the first read, so nothing appended
    after that read goes unnoticed)."""

    def __init__(
        self, recorder: EsdbDCBRecorder, query: DCBQuery | None = None, after: int | None = None
    ) -> None:
        with translated():
            self._live: BlockingIterator[RecordedEvent | CaughtUp] = recorder.client.subscribe(
                query=esdb_query(query) or DcbQuery()
            )
        super().__init__(recorder=recorder, query=query, after=after)
        self._listener = threading.Thread(target=self._listen, daemon=True)
        self._listener.start()
        recorder.datastore.opened(self)

    def _listen(self) -> None:
        try:
            for _ in self._live:
                self._has_been_notified.set()
        except EsdbError as e:
            if not self._has_been_stopped and self._thread_error is None:
                self._thread_error = persistence_error(e)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the subscription: the iteration ends, now or at its next step."""
        if not self._has_been_stopped:
            super().stop()
            with contextlib.suppress(EsdbError):  # the connection is closing: it ends anyway
                self._live.close()
