"""Public read requests: bytes to a validated reader query.

Shared by the readers, which serve reads the servers' subject mapping routes straight to them,
and the gateway, which serves them where no mapping routes them (a NATS it did not configure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from esdb.contracts import api
from esdb.contracts.commands import AllQuery, DcbReadQuery, InfoQuery, ListQuery, StreamQuery
from esdb.contracts.errors import InvalidRequest
from esdb.contracts.subjects import Op
from esdb.shared import validation
from esdb.shared.dcb_requests import dcb_read_query
from esdb.shared.settings import Settings
from esdb.shared.wire import Codec, decode_request

ReadQuery = StreamQuery | AllQuery | ListQuery | InfoQuery | DcbReadQuery

_REQUESTS: dict[str, tuple[type[msgspec.Struct], Callable[..., Any]]] = {
    Op.READ_STREAM: (api.ReadStreamRequest, validation.stream_query),
    Op.READ_ALL: (api.ReadAllRequest, validation.all_query),
    Op.LIST_STREAMS: (api.ListStreamsRequest, validation.list_query),
    Op.STREAM_INFO: (api.StreamInfoRequest, validation.info_query),
    Op.DCB_READ: (api.DcbReadRequest, dcb_read_query),
}


def read_query(
    store: str, operation: str, data: bytes, codec: Codec, settings: Settings
) -> tuple[ReadQuery, int | None]:
    """A public read's validated query and the `timeout_ms` it asked for."""
    query, request = read_request(store, operation, data, codec, settings)
    return query, getattr(request, "timeout_ms", None)


def read_request(
    store: str, operation: str, data: bytes, codec: Codec, settings: Settings
) -> tuple[ReadQuery, msgspec.Struct]:
    """A public read's validated query, and the request as decoded."""
    found = _REQUESTS.get(operation)
    if found is None:
        raise InvalidRequest(f"unknown operation {operation!r}", field="operation")
    request_type, to_query = found
    request = decode_request(data, request_type, codec)
    query: ReadQuery = to_query(store, request, codec, settings)
    return query, request
