"""`projection_partitions`: a projection's partitions in key order, a page at a time, each
with its state and result, read from the node's LMDB."""

from __future__ import annotations

from typing import Any

import msgspec

from esdb.contracts.errors import InvalidRequest
from esdb.contracts.projections import (
    ProjectionPartition,
    ProjectionPartitions,
    stored_partition_decoder,
)
from esdb.shared.storage import item_keys
from esdb.shared.storage.port import StoreReader

MAX_PAGE = 1_000


def json_value(text: bytes) -> Any:
    """A stored state or result as a value (empty text: null)."""
    return msgspec.json.decode(text) if text else None


def partition_page(
    reader: StoreReader, name: str, after: str | None, limit: int
) -> ProjectionPartitions:
    """Up to `limit` partitions of projection `name` after partition `after` (None: from the
    first)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be 1 to {MAX_PAGE}", field="limit")
    prefix = item_keys.partition_prefix(name)
    start = None if after is None else item_keys.partition_key(name, after)
    page = reader.items(item_keys.PROJECTIONS, prefix, after=start, limit=limit + 1)
    found = []
    for key, raw in page[:limit]:
        stored = stored_partition_decoder.decode(raw)
        found.append(
            ProjectionPartition(
                partition=key[len(prefix) :].decode(),
                state=json_value(stored.state),
                result=json_value(stored.result),
            )
        )
    more = len(page) > limit
    return ProjectionPartitions(
        name=name, partitions=found, next=found[-1].partition if more else None
    )
