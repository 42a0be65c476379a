"""The DCB index of a store, and DCB queries answered from it without scanning the log.

Three kinds of postings, each a key prefix followed by the event's position (8 bytes, big
endian), so a prefix lists its events in position order:

- `a` + position → type: every DCB event (a query with no items);
- `y` + type + NUL + position: the DCB events of one type;
- `t` + tag + NUL + position → type: the DCB events with one tag.

Tags and types hold no control characters (validated), so NUL ends them unambiguously. A query
item with tags walks the postings of its tags together (a leapfrog join: each step seeks the
next position all of them share), so its cost follows the rarest tag, not the history; the
type an item asks for is checked on the posting's value, without reading the event."""

from __future__ import annotations

import heapq
import struct
from collections.abc import Iterable, Iterator
from typing import Protocol

from esdb.contracts.commands import DcbItem

_U64 = struct.Struct(">Q")
ALL_PREFIX = b"a"
_TYPE = b"y"
_TAG = b"t"


def type_prefix(event_type: str) -> bytes:
    """The prefix of the postings of one event type."""
    return _TYPE + event_type.encode() + b"\x00"


def tag_prefix(tag: str) -> bytes:
    """The prefix of the postings of one tag."""
    return _TAG + tag.encode() + b"\x00"


def postings_of(position: int, event_type: str, tags: Iterable[str]) -> list[tuple[bytes, bytes]]:
    """The (key, value) postings that index one DCB event."""
    at = _U64.pack(position)
    kind = event_type.encode()
    return [
        (ALL_PREFIX + at, kind),
        (type_prefix(event_type) + at, b""),
        *((tag_prefix(tag) + at, kind) for tag in dict.fromkeys(tags)),
    ]


def position_of(key: bytes) -> int:
    """The position a posting key ends with."""
    return int(_U64.unpack_from(key, len(key) - 8)[0])


def position_key(prefix: bytes, position: int) -> bytes:
    """The key of `position` under `prefix`."""
    return prefix + _U64.pack(position)


class Postings(Protocol):
    """Ordered access to one store's DCB index, as of one read snapshot."""

    def seek(self, prefix: bytes, position: int, backward: bool) -> tuple[int, bytes] | None:
        """The posting under `prefix` at `position` or the first beyond it (below it when
        `backward`): its position and value."""
        ...

    def scan(self, prefix: bytes, position: int, backward: bool) -> Iterator[tuple[int, bytes]]:
        """Every posting under `prefix` from `position` on (down, when `backward`)."""
        ...


def matching_positions(
    postings: Postings, items: Iterable[DcbItem], after: int | None, backward: bool
) -> Iterator[int]:
    """Positions of the DCB events that match one of `items` (none: every DCB event), beyond
    `after` (None: from the start, or from the end when `backward`), in order."""
    if backward:
        start = (1 << 63) if after is None else after - 1
    else:
        start = 1 if after is None else after + 1
    if start < 1:
        return iter(())
    items = list(items)
    if not items:
        return (position for position, _ in postings.scan(ALL_PREFIX, start, backward))
    streams = [_item_positions(postings, item, start, backward) for item in items]
    if len(streams) == 1:
        return streams[0]
    return _distinct(heapq.merge(*streams, reverse=backward))


def first_match(postings: Postings, items: Iterable[DcbItem], after: int | None) -> int | None:
    """The position of the first DCB event beyond `after` that matches one of `items`."""
    return next(matching_positions(postings, items, after, backward=False), None)


def _distinct(positions: Iterator[int]) -> Iterator[int]:
    last = None
    for position in positions:
        if position != last:
            yield position
            last = position


def _item_positions(postings: Postings, item: DcbItem, start: int, backward: bool) -> Iterator[int]:
    if item.tags:
        return _tagged(postings, item, start, backward)
    if not item.types:  # an empty item matches every DCB event
        return (position for position, _ in postings.scan(ALL_PREFIX, start, backward))
    types = [
        (position for position, _ in postings.scan(type_prefix(kind), start, backward))
        for kind in dict.fromkeys(item.types)
    ]
    return _distinct(heapq.merge(*types, reverse=backward))


def _tagged(postings: Postings, item: DcbItem, start: int, backward: bool) -> Iterator[int]:
    """The positions carrying every tag of `item` (and one of its types, if it names any)."""
    prefixes = [tag_prefix(tag) for tag in dict.fromkeys(item.tags)]
    types = frozenset(kind.encode() for kind in item.types)
    step = -1 if backward else 1
    position = start
    while position >= 1:
        found = postings.seek(prefixes[0], position, backward)
        if found is None:
            return
        position, kind = found
        agreed, index = 1, 1
        while agreed < len(prefixes):
            other = postings.seek(prefixes[index % len(prefixes)], position, backward)
            if other is None:
                return
            if other[0] == position:
                agreed += 1
            else:
                position, agreed = other[0], 1
                kind = other[1]
            index += 1
        if not types or kind in types:
            yield position
        position += step
