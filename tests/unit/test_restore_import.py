"""The exact import's core against the writer's real planning and apply (in memory): requests
in flight together, answered in a shuffled order, still land in file order; a run cut off and
run again with other batch sizes ends with every event once; positions map by event id."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import cast

from esdb.cli.export_format import LineEvent
from esdb.cli.progress import Progress
from esdb.cli.restore_import import PositionMap, Restorer, chunks, plan_requests, singles
from esdb.client import Client
from esdb.contracts.api import AppendResult
from esdb.contracts.commands import WriteRequest
from esdb.contracts.errors import error_from_body
from esdb.contracts.restore import RestoreEvent, RestoreSnapshot, RestoreStream, StoreRestoreRequest
from esdb.services.gateway.restore_admin import restore_command
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import Catalog
from tests.builders import plan_and_apply

CREATED = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)


def _file(count: int, streams: int = 7) -> list[LineEvent]:
    """Interleaved events of several streams; every stream skips two versions once (hidden in
    the source) and the source positions have holes."""
    versions: dict[str, int] = {}
    events = []
    for n in range(1, count + 1):
        stream = f"s-{(n * 5 // 3) % streams}"
        version = versions.get(stream, 2) + (3 if versions.get(stream) == 6 else 1)
        versions[stream] = version
        event = RestoreEvent(
            event_id=str(uuid.UUID(int=n)),
            event_type="T",
            data=json.dumps({"n": n}).encode(),
            created=CREATED,
        )
        events.append(LineEvent(n, stream, version, n * 2, event, 60))
    return events


class _Leader:
    """`Client.restore_streams` served by the gateway's validation and the writer's planning
    and apply, each request held for a seeded number of loop turns so they overtake each
    other as they may between gateways."""

    def __init__(self, catalog: Catalog, seed: int) -> None:
        self.catalog = catalog
        self.store = "default"
        self._random = random.Random(seed)

    async def restore_streams(
        self,
        streams: Iterable[RestoreStream],
        *,
        snapshots: Iterable[RestoreSnapshot] = (),
        expected_position: int = -1,
    ) -> list[AppendResult]:
        for _ in range(self._random.randint(0, 6)):
            await asyncio.sleep(0)
        request = StoreRestoreRequest(
            store="default",
            expected_position=expected_position,
            streams=list(streams),
            snapshots=list(snapshots),
        )
        command = restore_command(request, Settings())
        outcomes, _ = plan_and_apply(self.catalog, WriteRequest("default", [], restore=command))
        if outcomes[0].error is not None:
            raise error_from_body(outcomes[0].error)
        assert outcomes[0].results is not None
        return outcomes[0].results


async def _import(
    catalog: Catalog, events: list[LineEvent], *, batch: int, seed: int = 1
) -> Restorer:
    leader = _Leader(catalog, seed)
    restorer = Restorer(
        cast(Client, leader), start_position=catalog.get("default").last_position(), in_flight=4
    )
    with Progress("import", enabled=False) as progress:
        await restorer.send_events(plan_requests(events, max_events=batch), progress)
    return restorer


def _stored(catalog: Catalog) -> list[tuple[str, str, int]]:
    records = catalog.get("default").read_all(1, backward=False, limit=1 << 20)[0]
    return [(str(uuid.UUID(bytes=r.event_id)), r.stream, r.version) for r in records]


def _expected(events: list[LineEvent]) -> list[tuple[str, str, int]]:
    return [(e.event.event_id, e.stream, e.version) for e in events]


async def test_pipelined_requests_land_in_file_order_with_the_file_s_versions(
    catalog: Catalog,
) -> None:
    events = _file(300)

    restorer = await _import(catalog, events, batch=13, seed=7)

    assert _stored(catalog) == _expected(events)
    assert (restorer.report.imported, restorer.report.skipped) == (300, 0)
    assert restorer.positions.exactly(events[10].position) == 11


async def test_a_run_cut_off_then_run_again_differently_stores_every_event_once(
    catalog: Catalog,
) -> None:
    events = _file(300)
    await _import(catalog, events[:97], batch=10, seed=3)  # killed after 97 events

    again = await _import(catalog, events, batch=64, seed=5)

    assert _stored(catalog) == _expected(events)
    assert (again.report.imported, again.report.skipped) == (203, 97)
    assert again.positions.at_or_below(events[-1].position) == 300  # replays map too


def _event(n: int, stream: str, version: int) -> LineEvent:
    event = RestoreEvent(event_id=str(uuid.UUID(int=n)), event_type="T", created=CREATED)
    return LineEvent(n, stream, version, n, event, 60)


def test_requests_are_runs_in_file_order_and_a_version_gap_starts_a_run() -> None:
    layout = [("a", 0), ("a", 1), ("b", 0), ("a", 2), ("a", 5), ("b", 1), ("b", 2)]
    events = [_event(n, stream, version) for n, (stream, version) in enumerate(layout, 1)]

    requests = list(plan_requests(events, max_events=6))

    assert [r.count for r in requests] == [6, 1]
    runs = [
        (r.stream, r.expected_version, r.first_version, len(r.events)) for r in requests[0].runs
    ]
    assert runs == [
        ("a", -1, 0, 2),
        ("b", -1, 0, 1),
        ("a", 1, 2, 1),
        ("a", 2, 5, 1),
        ("b", 0, 1, 1),
    ]
    assert [(r.stream, r.expected_version, r.first_version) for r in requests[1].runs] == [
        ("b", 1, 2)
    ]
    flat = [
        (s.runs[0].stream, s.runs[0].expected_version, s.runs[0].first_version)
        for s in singles(requests[0])
    ]
    assert flat == [("a", -1, 0), ("a", 0, 1), ("b", -1, 0), ("a", 1, 2), ("a", 2, 5), ("b", 0, 1)]


def test_positions_map_to_the_target_by_their_events() -> None:
    mapping = PositionMap()
    mapping.add([3, 5, 9], [1, 2, 3])

    assert [mapping.at_or_below(p) for p in (2, 3, 4, 9, 50)] == [0, 1, 1, 3, 3]
    assert [mapping.at_or_above(p, 4) for p in (1, 4, 9, 10)] == [1, 2, 3, 4]
    assert (mapping.exactly(5), mapping.exactly(6)) == (2, None)


def test_records_go_in_requests_bounded_by_count_and_bytes() -> None:
    sizes = [100, 100, 900_000, 400_000, 700_000, 5, 5, 5]

    cut = [
        [sizes[i] for i in chunk]
        for chunk in chunks(list(range(len(sizes))), lambda i: sizes[i], most=2)
    ]

    assert cut == [[100, 100], [900_000], [400_000], [700_000, 5], [5, 5]]
