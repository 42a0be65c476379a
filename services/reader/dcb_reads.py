"""The reader's `dcb_read`: DCB events by query, through the store's DCB index."""

from __future__ import annotations

from esdb.contracts.api import DcbEventOut, DcbReadResult
from esdb.contracts.commands import DcbReadQuery
from esdb.services.reader.reply_size import DEFAULT_BUDGET, events_fitting
from esdb.shared.storage.port import StoreReader
from esdb.shared.storage.records import EventRecord
from esdb.shared.wire import Codec, event_out


def dcb_read(
    store: StoreReader, query: DcbReadQuery, max_bytes: int = DEFAULT_BUDGET
) -> DcbReadResult:
    """A page of matching DCB events, as many as fit in `max_bytes` of reply, and the store's
    last position as of the read (a page cut short is read on from its last event)."""
    found, head = store.dcb_read(
        query.items, query.after, backward=query.backward, limit=query.limit
    )
    codec = Codec(query.codec)
    page = events_fitting(found, max_bytes)
    return DcbReadResult(
        events=[dcb_event_out(r, codec) for r in page],
        head=head or None,
        more=len(found) >= query.limit or len(page) < len(found),
    )


def dcb_event_out(record: EventRecord, codec: Codec) -> DcbEventOut:
    """The wire form of a stored DCB event."""
    out = event_out(record, codec)
    return DcbEventOut(
        position=record.position,
        type=record.type,
        data=out.data,
        metadata=out.metadata,
        tags=list(record.tags),
        event_id=out.event_id,
        content_type=record.content_type,
        created=out.created,
        version=record.version,
    )
