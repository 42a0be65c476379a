"""The export line format, how `esdb import --renumber` cuts a file into appends, and how it
tells new events from ones already stored (against an in-memory stand-in for the server's
rules)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from esdb.cli.append_import import Group, Importer, plan_batches, shifted
from esdb.cli.export_format import LineEvent, StreamLine, decode_line
from esdb.cli.export_format import encode_event as encode_line
from esdb.client import (
    AppendResult,
    AppendSpec,
    Client,
    IdempotencyConflict,
    InvalidRequest,
    NewEvent,
    RecordedEvent,
    WrongExpectedVersion,
)
from esdb.contracts.api import JSON_CONTENT_TYPE
from esdb.contracts.restore import RestoreEvent

CREATED = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _recorded(
    data: bytes, metadata: bytes = b"", content_type: str = JSON_CONTENT_TYPE
) -> RecordedEvent:
    return RecordedEvent(
        event_id=str(uuid.uuid4()),
        stream_id="order-1",
        version=3,
        position=42,
        event_type="Placed",
        data=data,
        metadata=metadata,
        content_type=content_type,
        created=CREATED,
    )


@pytest.mark.parametrize(
    ("data", "metadata", "content_type"),
    [
        (b'{"a":1,"b":[true,null]}', b'{"by":"me"}', JSON_CONTENT_TYPE),
        (b"", b"", JSON_CONTENT_TYPE),
        (b'{\n  "pretty": true\n}', b"", JSON_CONTENT_TYPE),
        (b'  {"spaced":1} ', b"null", JSON_CONTENT_TYPE),
        (b"null", b"[]", JSON_CONTENT_TYPE),
        (b"\x00\xff\n\x80 binary", b"\x01", "application/octet-stream"),
        ("caf\u00e9 text".encode(), b"", "text/plain"),
    ],
)
def test_every_payload_survives_a_line_byte_for_byte(
    data: bytes, metadata: bytes, content_type: str
) -> None:
    event = _recorded(data, metadata, content_type)
    line = encode_line(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = decode_line(line, 7)
    assert isinstance(back, LineEvent) and back.number == 7
    assert (back.stream, back.version, back.position) == (event.stream_id, event.version, 42)
    assert back.event.event_id == event.event_id
    assert back.event.event_type == event.event_type
    assert back.event.content_type == content_type
    assert back.event.created == CREATED
    assert (back.event.data, back.event.metadata) == (data, metadata)


def test_a_line_carries_the_api_fields_with_json_inline_and_bytes_base64() -> None:
    plain = json.loads(encode_line(_recorded(b'{"a":1}', b'{"m":2}')))
    assert plain == {
        "event_id": plain["event_id"],
        "stream_id": "order-1",
        "version": 3,
        "position": 42,
        "event_type": "Placed",
        "data": {"a": 1},
        "metadata": {"m": 2},
        "content_type": JSON_CONTENT_TYPE,
        "created": "2025-01-02T03:04:05.678901Z",
    }
    binary = json.loads(encode_line(_recorded(b"\xff", content_type="application/x")))
    assert (binary["data"], binary["metadata"], "base64" not in binary) == ("/w==", None, True)
    pretty = json.loads(encode_line(_recorded(b'{\n"a": 1}')))
    assert (pretty["data"], pretty["base64"]) == ("ewoiYSI6IDF9", ["data"])


def test_read_json_output_imports_too() -> None:
    """`esdb read --json` prints the same fields; lines without `base64` decode alike."""
    line = (
        b'{"event_id":"0b3c1c8e-7c57-4b4e-9d7e-3f1f7e0e6d11","stream_id":"s","version":0,'
        b'"position":1,"event_type":"T","data":{"x":1},"metadata":null,'
        b'"content_type":"application/json","created":"2025-01-01T00:00:00Z"}'
    )
    event = decode_line(line, 1)
    assert isinstance(event, LineEvent)
    assert (event.event.data, event.event.metadata) == (b'{"x":1}', b"")


@pytest.mark.parametrize(
    "line",
    [b"not json", b'{"stream_id": "s"}', b'{"event_id":"x","stream_id":"s","version":"one"}'],
)
def test_a_line_that_is_no_event_names_its_number(line: bytes) -> None:
    with pytest.raises(InvalidRequest, match="line 12 "):
        decode_line(line, 12)


def test_a_stream_state_line_decodes_apart_from_events() -> None:
    line = (
        b'{"kind":"stream","stream_id":"s","version":3,"state":"deleted",'
        b'"metadata":{"truncate_before":4,"owner":"ops"}}'
    )
    assert decode_line(line, 7) == StreamLine(
        stream_id="s", version=3, state="deleted", metadata={"truncate_before": 4, "owner": "ops"}
    )
    with pytest.raises(InvalidRequest, match=r"line 8 is not an export record"):
        decode_line(b'{"kind":"projection","name":"p"}', 8)
    with pytest.raises(InvalidRequest, match="line 9 "):
        decode_line(b'{"kind":"stream","stream_id":"s","version":3}', 9)


@pytest.mark.parametrize(
    ("metadata", "offset", "expected"),
    [
        ({"truncate_before": 6, "owner": "ops"}, -4, {"truncate_before": 2, "owner": "ops"}),
        ({"truncate_before": 6}, -10, {"truncate_before": 0}),
        ({"truncate_before": 6}, 3, {"truncate_before": 9}),
        ({"truncate_before": 6}, 0, {"truncate_before": 6}),
        ({"max_count": 5}, -4, {"max_count": 5}),
    ],
)
def test_truncate_before_moves_with_the_target_s_versions(
    metadata: dict[str, object], offset: int, expected: dict[str, object]
) -> None:
    assert shifted(metadata, offset) == expected


def _line(number: int, stream: str, version: int, size: int = 10) -> LineEvent:
    event = RestoreEvent(
        event_id=str(uuid.UUID(int=number)),
        event_type="T",
        data=json.dumps({"n": number}).encode(),
        created=CREATED,
    )
    return LineEvent(number, stream, version, number, event, size)


def _shape(batches: Iterable[list[Group]]) -> list[list[tuple[str, list[int]]]]:
    return [[(g.stream, [e.version for e in g.events]) for g in batch] for batch in batches]


def test_runs_of_a_stream_are_one_append_and_a_batch_holds_each_stream_once() -> None:
    events = [
        _line(1, "a", 0),
        _line(2, "a", 1),
        _line(3, "b", 0),
        _line(4, "c", 0),
        _line(5, "c", 1),
        _line(6, "a", 2),  # a again: a new batch, so the appends land in file order
        _line(7, "b", 1),
    ]
    assert _shape(plan_batches(events)) == [
        [("a", [0, 1]), ("b", [0]), ("c", [0, 1])],
        [("a", [2]), ("b", [1])],
    ]


def test_a_run_of_dcb_events_is_a_batch_alone() -> None:
    events = [
        _line(1, "a", 0),
        _line(2, "$dcb", 0),
        _line(3, "$dcb", 1),
        _line(4, "b", 0),
        _line(5, "c", 0),
    ]
    assert _shape(plan_batches(events)) == [
        [("a", [0])],
        [("$dcb", [0, 1])],
        [("b", [0]), ("c", [0])],
    ]


def test_batches_stay_within_their_event_and_byte_limits() -> None:
    events = [_line(n, "a", n) for n in range(7)]
    assert _shape(plan_batches(events, max_events=3)) == [
        [("a", [0, 1, 2])],
        [("a", [3, 4, 5])],
        [("a", [6])],
    ]
    large = [_line(1, "a", 0, size=50), _line(2, "b", 0, size=200), _line(3, "c", 0, size=50)]
    assert _shape(plan_batches(large, max_bytes=100)) == [[("a", [0])], [("b", [0])], [("c", [0])]]


def test_a_run_of_a_stream_stays_one_append_whatever_its_versions() -> None:
    events = [_line(1, "a", 4), _line(2, "a", 5), _line(3, "a", 9)]
    assert _shape(plan_batches(events)) == [[("a", [4, 5, 9])]]


class _Server:
    """The server's append rules that import relies on: an append whose event ids are all
    stored in place returns the original result, a partial overlap is a conflict, else the
    expected version is checked and the events get the next versions and positions."""

    def __init__(self) -> None:
        self.stored: dict[str, tuple[str, int, int]] = {}
        self.versions: dict[str, int] = {}
        self.position = 0
        self.requests = 0

    async def append(
        self, stream: str, events: Iterable[NewEvent], *, expected_version: Any = "any"
    ) -> AppendResult:
        return (
            await self.append_multi(
                [AppendSpec(stream, list(events), expected_version=expected_version)]
            )
        )[0]

    async def append_multi(self, appends: Iterable[AppendSpec]) -> list[AppendResult]:
        self.requests += 1
        specs = list(appends)
        ids = [cast(str, e.event_id) for s in specs for e in s.events]
        seen = [i for i in ids if i in self.stored]
        if seen and len(seen) < len(ids):
            raise IdempotencyConflict(f"{len(seen)} of {len(ids)} event ids are already stored")
        if seen:
            return [self._original(spec) for spec in specs]
        for spec in specs:
            actual = self.versions.get(spec.stream, -1)
            if spec.expected_version != "any" and spec.expected_version != actual:
                raise WrongExpectedVersion("wrong", stream=spec.stream, actual_version=actual)
        results = []
        for spec in specs:
            first_version = self.versions.get(spec.stream, -1) + 1
            for offset, event in enumerate(spec.events):
                self.position += 1
                self.stored[cast(str, event.event_id)] = (
                    spec.stream,
                    first_version + offset,
                    self.position,
                )
            self.versions[spec.stream] = first_version + len(spec.events) - 1
            last = self.position
            results.append(
                AppendResult(
                    first_version=first_version,
                    last_version=self.versions[spec.stream],
                    first_position=last - len(spec.events) + 1,
                    last_position=last,
                )
            )
        return results

    def _original(self, spec: AppendSpec) -> AppendResult:
        where = [self.stored[cast(str, e.event_id)] for e in spec.events]
        return AppendResult(
            first_version=where[0][1],
            last_version=where[-1][1],
            first_position=where[0][2],
            last_position=where[-1][2],
        )


async def _run(server: _Server, events: list[LineEvent], max_events: int = 1000) -> Importer:
    importer = Importer(cast(Client, server), high_water=server.position)
    for batch in plan_batches(events, max_events=max_events):
        await importer.send(batch)
    return importer


def _file(count: int) -> list[LineEvent]:
    """Events of three streams, interleaved, each stream's versions from 0."""
    versions: dict[str, int] = {}
    events = []
    for n in range(1, count + 1):
        stream = "abc"[(n // 2) % 3]
        versions[stream] = versions.get(stream, -1) + 1
        events.append(_line(n, stream, versions[stream]))
    return events


async def test_a_second_run_skips_everything_and_writes_nothing() -> None:
    server = _Server()
    first = await _run(server, _file(40))
    assert (first.report.imported, first.report.skipped) == (40, 0)
    stored = dict(server.stored)
    again = await _run(server, _file(40))
    assert (again.report.imported, again.report.skipped) == (0, 40)
    assert server.stored == stored


async def test_a_run_cut_differently_from_an_earlier_one_imports_just_the_rest() -> None:
    server = _Server()
    await _run(server, _file(25), max_events=4)
    rest = await _run(server, _file(60), max_events=1000)
    assert (rest.report.imported, rest.report.skipped) == (35, 25)
    order = sorted(server.stored.values(), key=lambda where: where[2])
    assert [(s, v) for s, v, _ in order] == [(e.stream, e.version) for e in _file(60)]
