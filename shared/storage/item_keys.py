"""Keys of the item tables (`ITEM_TABLES`): one place, shared by apply and the readers."""

from __future__ import annotations

import struct

_U64 = struct.Struct(">Q")
SUBSCRIPTIONS = "subscriptions"
PARKED = "parked"


def subscription_key(name: str) -> bytes:
    """A persistent subscription's definition key."""
    return name.encode()


def parked_prefix(name: str) -> bytes:
    """The prefix of every parked-event key of one subscription."""
    return name.encode() + b"\x00"


def parked_key(name: str, position: int) -> bytes:
    """A parked event's key: its subscription, then its position (so keys sort by it)."""
    return parked_prefix(name) + _U64.pack(position)


def parked_position(key: bytes) -> int:
    """The position a parked-event key names."""
    return int(_U64.unpack(key[-8:])[0])
