"""`read_all` with `compact`: the reader sends stored records as `CompactEvent` arrays, which
must say what the usual `events` say, in both codecs; the client reads either form."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from esdb.client.events import CompactReply, RecordedEvent
from esdb.contracts.api import CompactEvent, ReadAllResult, ReadFilter
from esdb.services.reader import queries
from esdb.shared.storage.catalog import Catalog
from esdb.shared.storage.records import EventRecord, StreamState
from esdb.shared.wire import Codec, encode
from tests.builders import DEFAULT_STORE, all_query, commit

_text = st.text(max_size=20)
_records = st.builds(
    EventRecord,
    event_id=st.binary(min_size=16, max_size=16),
    stream=_text,
    version=st.integers(0, 2**63 - 1),
    position=st.integers(1, 2**63 - 1),
    type=_text,
    data=st.binary(max_size=40),
    metadata=st.binary(max_size=40),
    content_type=_text,
    created_us=st.integers(0, 2**62),
)


@given(_records)
def test_a_stored_record_encodes_as_the_contract_s_compact_event(record: EventRecord) -> None:
    # The reader sends stored records as they are, in place of `CompactEvent`s.
    contract = CompactEvent(*msgspec.structs.astuple(record))
    for encoder in (msgspec.msgpack, msgspec.json):
        assert encoder.encode(record) == encoder.encode(contract)


@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_a_compact_page_holds_what_the_usual_page_holds(catalog: Catalog, codec: str) -> None:
    store = catalog.get(DEFAULT_STORE)
    commit(store, 2, [(f"order-{n % 3}", "Placed" if n % 2 else "Paid") for n in range(9)])
    with store.transaction(3) as txn:  # a tombstoned stream's events are hidden in both
        txn.put_stream_state("order-2", StreamState(2, "tombstoned"))
    flt = ReadFilter(event_types=["Placed"])
    usual = queries.read_all(store, all_query(codec=codec, flt=flt))
    compact = queries.read_all(store, queries.Compact(all_query(codec=codec, flt=flt)))
    assert compact.events == []
    assert compact.next_position == usual.next_position
    assert compact.records is not None
    reply = encode(compact, Codec(codec))
    decoded = (msgspec.msgpack if codec == "msgpack" else msgspec.json).decode(
        reply, type=ReadAllResult
    )
    assert decoded.records is not None
    assert [str(uuid.UUID(bytes=r.event_id)) for r in decoded.records] == [
        e.event_id for e in usual.events
    ]
    assert [(r.stream_id, r.version, r.position, r.event_type) for r in decoded.records] == [
        (e.stream_id, e.version, e.position, e.event_type) for e in usual.events
    ]
    epoch, microsecond = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)
    assert [r.created_us for r in decoded.records] == [
        (e.created - epoch) // microsecond for e in usual.events
    ]
    assert {r.stream_id for r in decoded.records} == {"order-0", "order-1"}


def test_the_usual_reply_has_no_records_key(catalog: Catalog) -> None:
    store = catalog.get(DEFAULT_STORE)
    commit(store, 2, [("order-1", "Placed")])
    reply = msgspec.json.decode(
        encode(queries.read_all(store, all_query(codec="json")), Codec.JSON)
    )
    assert set(reply) == {"events", "next_position"}


def test_the_client_reads_a_reply_in_either_form() -> None:
    created = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    event = RecordedEvent(
        event_id="00000000-0000-4000-8000-000000000007",
        stream_id="order-1",
        version=3,
        position=42,
        event_type="Placed",
        data=b'{"n":1}',
        metadata=b"{}",
        content_type="application/json",
        created=created,
    )
    expected = CompactEvent(
        event_id=uuid.UUID(event.event_id).bytes,
        stream_id="order-1",
        version=3,
        position=42,
        event_type="Placed",
        data=b'{"n":1}',
        metadata=b"{}",
        content_type="application/json",
        created_us=int(created.timestamp()) * 1_000_000 + 123456,
    )
    # From a gateway that passed the read on without the flag: the usual events.
    usual = CompactReply(events=[event], next_position=43).page()
    # From a reader: the records.
    compact = CompactReply(next_position=43, records=[expected]).page()
    assert usual == compact
    assert compact.records == [expected]
    assert compact.next_position == 43
