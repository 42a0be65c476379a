"""What a store name and a stream id may be: one rule for every service that takes them."""

from __future__ import annotations

import re

from esdb.contracts.dcb import DCB_STREAM
from esdb.contracts.errors import InvalidRequest, TooLarge
from esdb.shared.settings import NAME, STREAM_ID_CEILING

STORE_NAME = NAME
"""Stores are subject tokens: 1-64 letters, digits, `_` or `-`, not starting with `_` or `-`."""
MAX_STREAM_BYTES = STREAM_ID_CEILING
"""The longest stream id any configuration accepts (`max_stream_bytes` may lower it)."""
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def check_store(store: str, field: str = "store") -> str:
    """A store name must be a plain subject token."""
    if not STORE_NAME.fullmatch(store):
        raise InvalidRequest(
            f"store name {store!r} must be 1-64 letters, digits, '_' or '-', not starting "
            "with '_' or '-'",
            field=field,
        )
    return store


def check_readable_stream(
    stream: str, field: str = "stream", max_bytes: int = MAX_STREAM_BYTES
) -> str:
    """A stream a read may name: any `check_stream` takes, and the DCB events' own `$dcb`
    (read-only: it is written by `dcb_append` alone), so every stream `list_streams` shows
    can be read."""
    return stream if stream == DCB_STREAM else check_stream(stream, field, max_bytes)


def check_stream(stream: str, field: str = "stream", max_bytes: int = MAX_STREAM_BYTES) -> str:
    """Stream ids are non-empty, at most `max_bytes` of UTF-8, without control characters or
    a leading `$`."""
    if not stream:
        raise InvalidRequest("stream must not be empty", field=field)
    if len(stream.encode()) > max_bytes:
        raise TooLarge(f"stream id is over {max_bytes} bytes", field=field, limit=max_bytes)
    if CONTROL_CHARACTERS.search(stream):
        raise InvalidRequest("stream id must not contain control characters", field=field)
    if stream.startswith("$"):
        raise InvalidRequest("stream ids starting with '$' are reserved", field=field)
    return stream
