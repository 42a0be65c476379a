"""Dynamic consistency boundaries (contract): the stream DCB events live in, and the limits of
tags and queries (docs/dcb.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from esdb.contracts.commands import DcbItem

DCB_STREAM = "$dcb"
"""Every event of `dcb_append` is in this stream of its store: `$` ids are reserved, so no
stream append, stream read or stream lifecycle change can touch it, and `dcb_read` reads
nothing else."""
MAX_TAGS = 32
"""Tags per event at most."""
MAX_TAG_BYTES = 200
"""A tag is 1 to this many bytes of UTF-8, without control characters."""
MAX_QUERY_ITEMS = 64
"""Items per query (of `dcb_read` or a condition) at most."""
MAX_ITEM_TYPES = 64
"""Event types per query item at most."""


def matches(items: Sequence[DcbItem], event_type: str, tags: Iterable[str]) -> bool:
    """Whether an event matches one of `items` (every event matches no items): its type is
    one of the item's types (or the item names none) and it has every tag of the item."""
    if not items:
        return True
    have = frozenset(tags)
    return any(
        (not item.types or event_type in item.types) and have.issuperset(item.tags)
        for item in items
    )
