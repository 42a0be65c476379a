"""`set_stream_metadata`, `delete_stream` and `tombstone_stream` as validated writes."""

from __future__ import annotations

from typing import Any

from esdb.contracts.api import DeleteStreamRequest, SetStreamMetadataRequest
from esdb.contracts.commands import (
    LIFECYCLE_DELETE,
    LIFECYCLE_METADATA,
    LIFECYCLE_TOMBSTONE,
    StreamLifecycle,
    WriteRequest,
)
from esdb.contracts.errors import InvalidRequest, TooLarge
from esdb.contracts.subjects import Op
from esdb.shared.names import check_stream
from esdb.shared.settings import Settings
from esdb.shared.storage.visibility import MAX_AGE, MAX_COUNT, TRUNCATE_BEFORE
from esdb.shared.validation import check_timeout, expected_version
from esdb.shared.wire import Codec, decode_request, encode

MAX_METADATA_BYTES = 64 << 10
# The known keys and the least value each may take.
_COUNTS = {MAX_COUNT: 1, MAX_AGE: 1, TRUNCATE_BEFORE: 0}


def lifecycle_command(
    store: str, operation: str, data: bytes, codec: Codec, settings: Settings
) -> tuple[WriteRequest, int | None]:
    """The write for one stream-lifecycle request, and its `timeout_ms`."""
    if operation == Op.SET_STREAM_METADATA:
        request = decode_request(data, SetStreamMetadataRequest, codec)
        check_stream(request.stream, max_bytes=settings.max_stream_bytes)
        check_timeout(request.timeout_ms, settings)
        change = StreamLifecycle(
            request.stream,
            expected_version(request.expected_version, "expected_version"),
            LIFECYCLE_METADATA,
            check_metadata(request.metadata),
        )
        return WriteRequest(store, [], lifecycle=change), request.timeout_ms
    delete = decode_request(data, DeleteStreamRequest, codec)
    check_stream(delete.stream, max_bytes=settings.max_stream_bytes)
    check_timeout(delete.timeout_ms, settings)
    action = LIFECYCLE_DELETE if operation == Op.DELETE_STREAM else LIFECYCLE_TOMBSTONE
    change = StreamLifecycle(
        delete.stream, expected_version(delete.expected_version, "expected_version"), action
    )
    return WriteRequest(store, [], lifecycle=change), delete.timeout_ms


def check_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Known keys are integers (or null to clear them); custom keys are any JSON value."""
    for key, least in _COUNTS.items():
        value = metadata.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InvalidRequest(
                f"{key} must be an integer >= {least} or null", field=f"metadata.{key}"
            )
    size = len(encode(metadata, Codec.MSGPACK))
    if size > MAX_METADATA_BYTES:
        raise TooLarge(
            f"metadata is {size} bytes; the limit is {MAX_METADATA_BYTES}",
            field="metadata",
            limit=MAX_METADATA_BYTES,
        )
    return {key: value for key, value in metadata.items() if value is not None}
