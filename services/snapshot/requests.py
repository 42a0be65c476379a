"""Validating snapshot requests; every rejection names its field."""

from __future__ import annotations

import re

import msgspec

from esdb.contracts.errors import InvalidRequest, TooLarge
from esdb.contracts.snapshots import (
    LATEST,
    MAX_CONTENT_TYPE_BYTES,
    MAX_ID_BYTES,
    MAX_LIST_LIMIT,
    MAX_VERSION,
    SnapshotVersionIn,
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_json_encoder = msgspec.json.Encoder()


def check_id(value: str, field: str) -> str:
    """`source_uuid` and `stream_uuid`: 1-200 bytes without control characters."""
    if not value:
        raise InvalidRequest(f"{field} must not be empty", field=field)
    if len(value.encode()) > MAX_ID_BYTES:
        raise InvalidRequest(f"{field} must be at most {MAX_ID_BYTES} bytes", field=field)
    if _CONTROL.search(value):
        raise InvalidRequest(f"{field} must not contain control characters", field=field)
    return value


def check_version(value: int, field: str = "version") -> int:
    """An exact snapshot version: 0 to 2**63 - 1."""
    if not 0 <= value <= MAX_VERSION:
        raise InvalidRequest(f"{field} must be an integer from 0 to {MAX_VERSION}", field=field)
    return value


def read_version(value: SnapshotVersionIn) -> int | None:
    """`snapshot_read`'s version: exact, or None for `latest`."""
    if value == LATEST:
        return None
    if isinstance(value, int):
        return check_version(value)
    raise InvalidRequest(
        f"version must be {LATEST!r} or an integer from 0 to {MAX_VERSION}, not {value!r}",
        field="version",
    )


def check_content_type(value: str) -> str:
    """A content type: 1-128 bytes without control characters."""
    if not value or len(value.encode()) > MAX_CONTENT_TYPE_BYTES or _CONTROL.search(value):
        raise InvalidRequest(
            f"content_type must be 1-{MAX_CONTENT_TYPE_BYTES} bytes without control characters",
            field="content_type",
        )
    return value


def check_keep_last(value: int | None) -> int:
    """Retention: None keeps every version (0 in the log op), else at least 1."""
    if value is None:
        return 0
    if value < 1:
        raise InvalidRequest(
            "keep_last must be at least 1 (or absent: keep all)", field="keep_last"
        )
    return value


def check_limit(value: int) -> int:
    """A list page size: 1 to `MAX_LIST_LIMIT`."""
    if not 1 <= value <= MAX_LIST_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIST_LIMIT}", field="limit")
    return value


def check_size(data: bytes, metadata: bytes, limit: int) -> None:
    """Data plus metadata within `limit` bytes, else `TooLarge`."""
    size = len(data) + len(metadata)
    if size > limit:
        raise TooLarge(f"snapshot is {size} bytes; the limit is {limit}", field="data", limit=limit)
