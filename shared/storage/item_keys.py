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


# The `snapshots` table holds three key spaces, told apart by their first byte: payloads by
# (source, stream, version), and two indexes whose values are small summaries, one ordered by
# source first and one by stream first. Ids never hold NUL (validated), so NUL ends each id and
# a shorter id sorts before every longer one it prefixes.
SNAPSHOTS = "snapshots"
_SNAPSHOT_DATA = b"d"
_BY_SOURCE = b"s"
_BY_STREAM = b"t"


def _id(value: str) -> bytes:
    return value.encode() + b"\x00"


def snapshot_data_prefix(source: str, stream: str) -> bytes:
    """The prefix of every payload key of one (source, stream); the last key is the latest."""
    return _SNAPSHOT_DATA + _id(source) + _id(stream)


def snapshot_data_key(source: str, stream: str, version: int) -> bytes:
    """A snapshot payload's key."""
    return snapshot_data_prefix(source, stream) + _U64.pack(version)


def snapshot_source_prefix(source: str | None = None, stream: str | None = None) -> bytes:
    """The prefix of the source-ordered index: every snapshot, one source's, or one
    (source, stream)'s (`stream` only with `source`)."""
    if source is None:
        return _BY_SOURCE
    return _BY_SOURCE + _id(source) + (b"" if stream is None else _id(stream))


def snapshot_source_key(source: str, stream: str, version: int) -> bytes:
    """A snapshot's key in the source-ordered index."""
    return snapshot_source_prefix(source, stream) + _U64.pack(version)


def snapshot_stream_prefix(stream: str) -> bytes:
    """The prefix of one stream's snapshots (of every source) in the stream-ordered index."""
    return _BY_STREAM + _id(stream)


def snapshot_stream_key(source: str, stream: str, version: int) -> bytes:
    """A snapshot's key in the stream-ordered index."""
    return snapshot_stream_prefix(stream) + _id(source) + _U64.pack(version)


def snapshot_version(key: bytes) -> int:
    """The version any snapshot key names."""
    return int(_U64.unpack(key[-8:])[0])


def snapshot_of_key(key: bytes) -> tuple[str, str, int]:
    """(source, stream, version) of a payload or index key."""
    first, second, _ = key[1:-8].split(b"\x00")
    if key[:1] == _BY_STREAM:
        first, second = second, first
    return first.decode(), second.decode(), snapshot_version(key)


# The `projections` table: each projection's record under its name, and its partitions'
# states under the name, NUL, the partition key (names never hold NUL: validated).
PROJECTIONS = "projections"
_PROJECTION = b"p"
_PARTITION = b"s"


def projection_key(name: str) -> bytes:
    """A projection's record key."""
    return _PROJECTION + name.encode()


def projection_prefix() -> bytes:
    """The prefix of every projection record."""
    return _PROJECTION


def projection_name(key: bytes) -> str:
    """The projection a record key names."""
    return key[1:].decode()


def partition_prefix(name: str) -> bytes:
    """The prefix of every partition state of one projection."""
    return _PARTITION + _id(name)


def partition_key(name: str, partition: str) -> bytes:
    """One partition's state key."""
    return partition_prefix(name) + partition.encode()
