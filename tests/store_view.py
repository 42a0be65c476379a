"""A store as the public API shows it (`read_all`, `list_streams`, `stream_info` of every
stream, `subscription_info`, `subscription_parked`, `snapshot_list`, `dcb_read` by each tag,
`projection_list`, `projection_info`, `projection_state` and `projection_result` of every
partition), and the differences
between a source and its imported copy, positions compared through the same events' ids."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from esdb.client import Client, RecordedEvent
from esdb.client.dcb import DcbQuery, DcbQueryItem, DcbRecordedEvent
from esdb.contracts.api import StreamInfoResult, StreamSummary
from esdb.contracts.projections import ProjectionInfo
from esdb.contracts.snapshots import SnapshotInfo
from esdb.contracts.subscriptions import ParkedEvent, SubscriptionInfo


@dataclass
class StoreView:
    """Everything the public API says about one store."""

    store: str
    events: list[RecordedEvent]
    streams: list[StreamSummary]
    infos: dict[str, StreamInfoResult]
    subscriptions: dict[str, SubscriptionInfo]
    parked: dict[str, list[ParkedEvent]]
    snapshots: list[SnapshotInfo]
    by_tag: dict[str, list[DcbRecordedEvent]]
    projections: list[ProjectionInfo]
    infos_of_projections: dict[str, ProjectionInfo]
    partitions: dict[str, dict[str | None, tuple[Any, Any]]]
    """Each projection's (state, result) by partition; None: what naming none answers."""


async def view_of(client: Client) -> StoreView:
    """Read a store's whole public state."""
    events = [e async for e in client.iter_all(page_size=1000)]
    streams = [s async for s in client.iter_streams(page_size=1000)]
    infos = {s.stream: await client.stream_info(s.stream) for s in streams}
    listed = await client.list_subscriptions()
    subscriptions = {s.subscription: await client.subscription_info(s.subscription) for s in listed}
    parked = {name: [p async for p in client.iter_parked(name)] for name in subscriptions}
    snapshots = [s async for s in client.iter_snapshots()]
    tags = sorted({t for e in events for t in e.tags})
    by_tag = {tag: await _tagged(client, tag) for tag in tags}
    projections = await client.list_projections()
    infos_of_projections = {p.name: await client.projection_info(p.name) for p in projections}
    partitions = {p.name: await _partitions(client, p.name) for p in projections}
    return StoreView(
        client.store,
        events,
        streams,
        infos,
        subscriptions,
        parked,
        snapshots,
        by_tag,
        projections,
        infos_of_projections,
        partitions,
    )


async def _partitions(client: Client, name: str) -> dict[str | None, tuple[Any, Any]]:
    keys: list[str | None] = [None]
    keys += [p.partition async for p in client.iter_projection_partitions(name, page_size=2)]
    return {
        key: (await client.projection_state(name, key), await client.projection_result(name, key))
        for key in keys
    }


async def _tagged(client: Client, tag: str) -> list[DcbRecordedEvent]:
    page = await client.dcb_read(DcbQuery([DcbQueryItem(tags=[tag])]), limit=1000)
    assert not page.more, "a test store's tag matches one page"
    return page.events


def _content(event: RecordedEvent) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.stream_id,
        event.version,
        event.event_type,
        event.data,
        event.metadata,
        event.content_type,
        event.created,
        event.tags,
    )


class _Positions:
    """Source positions to the target's, by the ids of the events at them."""

    def __init__(self, source: list[RecordedEvent], target: list[RecordedEvent]) -> None:
        where = {e.event_id: e.position for e in target}
        self._source = [e.position for e in source]
        self._target = [where.get(e.event_id, -1) for e in source]
        self.after_all = (target[-1].position if target else 0) + 1

    def at_or_below(self, position: int) -> int:
        index = bisect.bisect_right(self._source, position)
        return self._target[index - 1] if index else 0

    def at_or_above(self, position: int) -> int:
        index = bisect.bisect_left(self._source, position)
        return self._target[index] if index < len(self._source) else self.after_all


def differences(source: StoreView, target: StoreView) -> list[str]:
    """Every way `target` is not an exact import of `source` (empty: none)."""
    found: list[str] = []

    def differ(what: str, left: object, right: object) -> None:
        if left != right:
            found.append(f"{what}: source {left!r} != target {right!r}")

    differ("events", [_content(e) for e in source.events], [_content(e) for e in target.events])
    positions = _Positions(source.events, target.events)
    differ(
        "event positions (mapped by id)",
        [positions.at_or_below(e.position) for e in source.events],
        [e.position for e in target.events],
    )
    differ("list_streams", source.streams, target.streams)
    differ(
        "stream_info",
        {s: (i.version, i.state, i.metadata) for s, i in source.infos.items()},
        {s: (i.version, i.state, i.metadata) for s, i in target.infos.items()},
    )
    differ("snapshot_list", source.snapshots, target.snapshots)
    differ(
        "dcb_read by tag",
        {
            tag: [
                (e.event_id, e.type, e.tags, e.data, e.version, positions.at_or_below(e.position))
                for e in found
            ]
            for tag, found in source.by_tag.items()
        },
        {
            tag: [(e.event_id, e.type, e.tags, e.data, e.version, e.position) for e in found]
            for tag, found in target.by_tag.items()
        },
    )
    differ("subscriptions", sorted(source.subscriptions), sorted(target.subscriptions))
    for name, left in source.subscriptions.items():
        right = target.subscriptions.get(name)
        if right is None:
            continue
        # In flight and consumers are deliveries now, not stored state; the subject names
        # the store.
        differ(
            f"subscription_info {name}",
            (
                left.subject.replace(f".{source.store}.", f".{target.store}."),
                left.selector,
                positions.at_or_above(left.start_position),
                left.message_timeout_ms,
                left.max_retries,
                left.max_in_flight,
                positions.at_or_below(left.checkpoint),
                positions.at_or_below(left.last_position),
                left.parked,
                left.resolve_links,
            ),
            (
                right.subject,
                right.selector,
                right.start_position,
                right.message_timeout_ms,
                right.max_retries,
                right.max_in_flight,
                right.checkpoint,
                right.last_position,
                right.parked,
                right.resolve_links,
            ),
        )
        differ(f"subscription_info {name} lag", right.last_position - right.checkpoint, right.lag)
        differ(
            f"subscription_parked {name}",
            [(positions.at_or_below(p.position), p.reason, p.parked) for p in source.parked[name]],
            [(p.position, p.reason, p.parked) for p in target.parked.get(name, [])],
        )
    _projection_differences(source, target, positions, differ)
    return found


def _projection_differences(
    source: StoreView, target: StoreView, positions: _Positions, differ: Any
) -> None:
    """Projections alike but for positions (mapped by event id) and the epoch (a restore
    runs in the next one)."""
    last = target.events[-1].position if target.events else 0
    for listed, by_info in (
        (source.projections, source.infos_of_projections),
        (target.projections, target.infos_of_projections),
    ):
        differ("projection_list vs projection_info", {p.name: p for p in listed}, by_info)
    differ("projections", sorted(source.infos_of_projections), sorted(target.infos_of_projections))
    for name, left in source.infos_of_projections.items():
        right = target.infos_of_projections.get(name)
        if right is None:
            continue
        fault = left.fault_position
        differ(
            f"projection_info {name}",
            (
                left.status,
                left.reason,
                positions.at_or_below(left.position),
                left.events_processed,
                left.events_emitted,
                left.partitions,
                left.enabled,
                left.emit_enabled,
                left.query,
                None if fault is None else positions.at_or_above(fault),
                left.epoch + 1,
            ),
            (
                right.status,
                right.reason,
                right.position,
                right.events_processed,
                right.events_emitted,
                right.partitions,
                right.enabled,
                right.emit_enabled,
                right.query,
                right.fault_position,
                right.epoch,
            ),
        )
        differ(f"projection_info {name} lag", max(0, last - right.position), right.lag)
        differ(f"projection partitions {name}", source.partitions[name], target.partitions[name])
