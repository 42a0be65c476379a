"""Resolving link events (`$>`, written by a projection's `linkTo`): a link's data is
`<version>@<stream>`, and a read or subscription with `resolve_links` gets the event it points
to in its place, at the link's position. A link whose event is no longer readable (deleted,
truncated, scavenged, expired) resolves to nothing and is left out."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from esdb.contracts.projections import link_target
from esdb.shared.storage.port import StoreReader
from esdb.shared.storage.records import EventRecord
from esdb.shared.storage.visibility import is_visible


def resolve_links(
    store: StoreReader, records: Iterable[EventRecord], now_us: int
) -> list[EventRecord]:
    """`records` with each link replaced by its event at the link's position; links that
    resolve to nothing left out."""
    out: list[EventRecord] = []
    for record in records:
        target = link_target(record.type, record.data)
        if target is None:
            out.append(record)
            continue
        resolved = _linked(store, *target, now_us)
        if resolved is not None:
            out.append(msgspec.structs.replace(resolved, position=record.position))
    return out


def _linked(store: StoreReader, stream: str, version: int, now_us: int) -> EventRecord | None:
    state = store.stream_state(stream)
    if state is None:
        return None
    found = store.read_stream(stream, version, backward=False, limit=1)
    if not found or found[0].version != version or not is_visible(found[0], state, now_us):
        return None
    return found[0]
