"""The web UI's pure logic: forms and query strings, payloads as shown, stream paging, rates
from samples, server-sent event framing, URLs with and without credentials."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import msgspec
import pytest

from esdb.client import RecordedEvent
from esdb.contracts.topics import escape_token
from esdb.services.ui.access import requires_login, with_user, without_credentials
from esdb.services.ui.dashboard import read_counts
from esdb.services.ui.forms import (
    FormError,
    LiveSelection,
    StoreForm,
    StreamSearch,
    SubscriptionForm,
    expected_version,
    json_object,
    page_size,
)
from esdb.services.ui.live import sse_message
from esdb.services.ui.present import (
    MAX_SHOWN_BYTES,
    CounterSeries,
    RateSeries,
    ago,
    event_json,
    human_bytes,
    show_payload,
    sparkline,
    stream_page,
)

# ---- forms ----


def test_a_live_selection_maps_to_its_subject_and_read_filter() -> None:
    assert LiveSelection.parse({}).subject("s") == "esdb.events.s.>"
    category = LiveSelection.parse({"kind": "category", "value": "order"})
    assert category.subject("s") == "esdb.events.s.order.>"
    assert category.read_filter() == {"category": "order"}
    stream = LiveSelection.parse({"kind": "stream", "value": "order-4 2"})
    assert stream.subject("s") == f"esdb.events.s.order.{escape_token('order-4 2')}.*"
    assert stream.read_filter() == {"stream_regex": r"^order\-4\ 2$"}
    kind = LiveSelection.parse({"kind": "type", "value": "Placed"})
    assert (kind.subject("s"), kind.read_filter()) == (
        "esdb.events.s.*.*.Placed",
        {"event_types": ["Placed"]},
    )
    assert kind.describe() == "event type Placed"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"kind": "planet"}, "kind"),
        ({"kind": "stream"}, "value"),
        ({"kind": "type", "value": " "}, "value"),
    ],
)
def test_a_bad_live_selection_names_its_field(query: dict[str, str], field: str) -> None:
    with pytest.raises(FormError) as raised:
        LiveSelection.parse(query)
    assert raised.value.field == field


def test_a_prefix_search_lists_from_just_below_the_prefix() -> None:
    search = StreamSearch.parse({"q": "order-"})
    after = search.first_after()
    assert after is not None
    names = sorted(["order", "order-", "order-1", "order-9", "orders", "ordeq-1", "p"])
    listed = [n for n in names if n.encode() > after.encode()]
    assert listed[0] == "order-"
    assert [n for n in listed if search.matches(n)] == ["order-", "order-1", "order-9"]
    assert search.past("orders") and not search.past("order-5") and not search.past("ordeq")
    assert StreamSearch.parse({}).first_after() is None


def test_a_category_search_matches_the_id_before_the_first_dash() -> None:
    search = StreamSearch.parse({"by": "category", "q": "order"})
    assert search.matches("order-1") and search.matches("order")
    assert not search.matches("orders-1") and not search.matches("order1-x")
    with pytest.raises(FormError, match="name the category"):
        StreamSearch.parse({"by": "category"})
    with pytest.raises(FormError):
        StreamSearch.parse({"by": "suffix", "q": "x"})


def test_page_sizes_are_a_fixed_choice() -> None:
    assert page_size({}) == 50
    assert page_size({"limit": "500"}) == 500
    for bad in ("7", "0", "x", "100000"):
        with pytest.raises(FormError):
            page_size({"limit": bad})


def test_expected_versions() -> None:
    assert expected_version({}) == "any"
    assert expected_version({"expected_version": " 3 "}) == 3
    assert expected_version({"expected_version": "no_stream"}) == "no_stream"
    assert expected_version({"expected_version": "stream_exists"}) == "stream_exists"
    for bad in ("-2", "three"):
        with pytest.raises(FormError):
            expected_version({"expected_version": bad})


def test_metadata_must_be_a_json_object() -> None:
    assert json_object({"metadata": ""}, "metadata") == {}
    assert json_object({"metadata": '{"max_count": 3}'}, "metadata") == {"max_count": 3}
    with pytest.raises(FormError, match="line 1, column"):
        json_object({"metadata": '{"max_count": 3,}'}, "metadata")
    with pytest.raises(FormError, match="JSON object"):
        json_object({"metadata": "[1]"}, "metadata")


def test_a_subscription_form() -> None:
    form = SubscriptionForm.parse(
        {"subscription": "billing", "selector": "category", "value": "order", "start": "12"}
    )
    assert (form.name, form.selector, form.start) == ("billing", {"category": "order"}, 12)
    assert (form.message_timeout_ms, form.max_retries, form.max_in_flight) == (30_000, 10, 100)
    assert SubscriptionForm.parse({"subscription": "all-1", "start": "end"}).selector == {
        "all": True
    }
    for bad, field in (
        ({"subscription": "bad name"}, "subscription"),
        ({"subscription": "x", "selector": "stream"}, "value"),
        ({"subscription": "x", "selector": "planet"}, "selector"),
        ({"subscription": "x", "start": "-1"}, "start"),
        ({"subscription": "x", "max_in_flight": "0"}, "max_in_flight"),
    ):
        with pytest.raises(FormError) as raised:
            SubscriptionForm.parse(bad)
        assert raised.value.field == field


def test_a_store_form_splits_tags() -> None:
    form = StoreForm.parse({"store": "eu", "description": " shop ", "tags": "a, b,,c "})
    assert (form.name, form.description, form.tags) == ("eu", "shop", ["a", "b", "c"])
    with pytest.raises(FormError):
        StoreForm.parse({"store": "_sys"})


# ---- how things are shown ----


def test_payloads_are_pretty_printed_or_shown_as_text_or_hex() -> None:
    shown = show_payload(b'{"a":[1,2],"b":"\xc3\xa9"}', "application/json")
    assert shown.kind == "json" and json.loads(shown.text) == {"a": [1, 2], "b": "é"}
    assert '\n  "a": [' in shown.text
    assert shown.preview == '{"a": [1, 2], "b": "é"}'
    long_line = show_payload(b"word\n" * 100, "text/plain").preview
    assert len(long_line) == 100 and long_line.endswith("…") and "\n" not in long_line
    assert show_payload(b"", "application/json").kind == "empty"
    assert show_payload(b"plain words", "text/plain").text == "plain words"
    binary = show_payload(bytes(range(256)) * 4, "application/octet-stream")
    assert binary.kind == "binary" and "1.0 KiB" in binary.note and binary.text.startswith("0001")
    big = show_payload(b'"' + b"x" * (MAX_SHOWN_BYTES + 10) + b'"', "application/json")
    assert big.note and len(big.text) <= MAX_SHOWN_BYTES + 2


def test_sizes_and_ages_in_words() -> None:
    assert [human_bytes(n) for n in (None, 0, 1023, 1024, 5 << 20, 3 << 40)] == [
        "—", "0 B", "1023 B", "1.0 KiB", "5.0 MiB", "3.0 TiB"
    ]  # fmt: skip
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert ago(now - timedelta(seconds=5), now) == "5 s ago"
    assert ago(now - timedelta(minutes=3), now) == "3 min ago"
    assert ago(now - timedelta(hours=2), now) == "2 h ago"
    assert ago(now - timedelta(days=3), now) == "2025-12-30"
    assert ago(now + timedelta(seconds=1), now) == "just now"


def test_an_event_as_json_has_the_live_fan_out_shape() -> None:
    created = datetime(2026, 1, 2, tzinfo=UTC)
    event = RecordedEvent(
        event_id="e1", stream_id="s-1", version=0, position=7, event_type="T",
        data=b'{"n": 1}', metadata=b"", content_type="application/json", created=created,
    )  # fmt: skip
    decoded = json.loads(event_json(event))
    assert decoded["data"] == {"n": 1} and decoded["metadata"] is None
    assert decoded["position"] == 7 and decoded["created"].startswith("2026-01-02")
    raw = msgspec.structs.replace(event, data=b"\x00\x01", content_type="application/octet-stream")
    assert json.loads(event_json(raw))["data"] == "AAE="


def test_stream_pages_newest_first() -> None:
    # The newest page of a stream at version 2499, 500 a page.
    newest = stream_page(2499, 1999, 2499, 500)
    assert (newest.newer, newest.older, newest.newest) == (None, 1999, None)
    middle = stream_page(1499, 999, 2499, 500)
    assert (middle.newer, middle.older, middle.newest) == (1999, 999, 2499)
    oldest = stream_page(499, None, 2499, 500)
    assert (oldest.newer, oldest.older) == (999, None)
    assert stream_page(None, None, 4, 50).older is None


def test_rates_from_position_samples() -> None:
    series = RateSeries(keep=3)
    assert series.latest() is None
    series.add(0.0, {"a": 100, "b": 0})
    series.add(5.0, {"a": 150, "b": 10})
    series.add(10.0, {"a": 150, "b": 10, "c": 25})
    assert series.rates() == [(5.0, 12.0), (0.0, 5.0)]
    assert series.rates(["a"]) == [(5.0, 10.0), (0.0, 0.0)]
    series.add(15.0, {"a": 3})  # recreated: counts from 0
    assert series.latest(["a"]) == pytest.approx(0.6)
    assert len(series.rates()) == 2  # keeps 3 samples


def test_counter_rates_survive_a_restart() -> None:
    series = CounterSeries()
    series.add(0.0, {"r1": 10.0, "r2": 0.0})
    series.add(2.0, {"r1": 30.0, "r2": 4.0})
    series.add(4.0, {"r1": 2.0, "r2": 4.0})
    assert series.rates() == [(2.0, 12.0), (0.0, 1.0)]


def test_a_sparkline_fits_its_box() -> None:
    assert sparkline([]) == ""
    assert (
        sparkline([(10.0, 0.0), (5.0, 2.0), (0.0, 1.0)], 300, 60) == "0.0,60.0 150.0,0.0 300.0,30.0"
    )


def test_read_counts_from_prometheus_text() -> None:
    text = (
        "# HELP esdb_reader_request_seconds Time ...\n"
        'esdb_reader_request_seconds_count{operation="read_stream"} 12.0\n'
        'esdb_reader_request_seconds_count{operation="read_all"} 3.0\n'
        'esdb_reader_request_seconds_count{operation="stream_info"} 99.0\n'
        'esdb_reader_request_seconds_sum{operation="read_all"} 0.5\n'
    )
    assert read_counts(text) == 15.0


# ---- server-sent events and URLs ----


def test_server_sent_events_keep_multi_line_payloads_whole() -> None:
    assert sse_message(5, b'{"a":1}') == b'id: 5\nevent: event\ndata: {"a":1}\n\n'
    framed = sse_message(6, b'{"a":\r\n 1}', "gap")
    assert framed == b'id: 6\nevent: gap\ndata: {"a":\ndata:  1}\n\n'
    data = [line[6:] for line in framed.decode().splitlines() if line.startswith("data: ")]
    assert json.loads("\n".join(data)) == {"a": 1}


def test_urls_with_and_without_credentials() -> None:
    url = "nats://esdb-service:s3cret@127.0.0.1:4222,nats://esdb-service:s3cret@[::1]:4223"
    assert requires_login(url) and not requires_login("nats://127.0.0.1:4222")
    assert without_credentials(url) == "nats://127.0.0.1:4222,nats://[::1]:4223"
    joined = with_user("tls://h:4222", "tenant-a", "p@ss:word")
    assert joined == "tls://tenant-a:p@ss:word@h:4222"
    parts = urlsplit(joined)
    assert (parts.username, parts.password, parts.hostname, parts.port) == (
        "tenant-a", "p@ss:word", "h", 4222
    )  # fmt: skip
