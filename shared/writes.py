"""Public write requests: bytes to a validated `WriteRequest`, an outcome to reply bytes.

Shared by the writer leader, which serves writes routed to it by the servers' subject mapping,
and the gateway, which serves them where no mapping routes them (a NATS it did not configure)."""

from __future__ import annotations

from esdb.contracts import api
from esdb.contracts.api import AppendMultiResult, DcbAppendResult, StreamVersionResult
from esdb.contracts.commands import WriteOutcome, WriteRequest
from esdb.contracts.errors import (
    EsdbError,
    InternalError,
    InvalidRequest,
    error_from_body,
)
from esdb.contracts.subjects import LIFECYCLE_OPERATIONS, Op
from esdb.shared import validation
from esdb.shared.dcb_requests import dcb_append_command
from esdb.shared.lifecycle import lifecycle_command
from esdb.shared.settings import Settings
from esdb.shared.wire import Codec, decode_request, encode, encode_error


def write_command(
    store: str, operation: str, data: bytes, codec: Codec, settings: Settings
) -> tuple[WriteRequest, int | None]:
    """A write operation's validated `WriteRequest` and the `timeout_ms` it asked for."""
    if operation in LIFECYCLE_OPERATIONS:
        return lifecycle_command(store, operation, data, codec, settings)
    if operation == Op.APPEND:
        single = decode_request(data, api.AppendRequest, codec)
        return validation.append_command(store, single, codec, settings), single.timeout_ms
    if operation == Op.APPEND_MULTI:
        multi = decode_request(data, api.AppendMultiRequest, codec)
        return validation.append_multi_command(store, multi, codec, settings), multi.timeout_ms
    if operation == Op.DCB_APPEND:
        dcb = decode_request(data, api.DcbAppendRequest, codec)
        return dcb_append_command(store, dcb, codec, settings), dcb.timeout_ms
    raise InvalidRequest(f"unknown operation {operation!r}", field="operation")


def write_reply(operation: str, outcome: WriteOutcome, codec: Codec) -> tuple[bytes, str | None]:
    """The reply to a write with `outcome`, and its error code (None: it succeeded)."""
    try:
        results = _results(outcome)
    except EsdbError as e:
        return encode_error(e, codec), e.code.value
    if operation == Op.APPEND_MULTI:
        return encode(AppendMultiResult(results=results), codec), None
    if operation in LIFECYCLE_OPERATIONS:
        return encode(StreamVersionResult(version=results[0].last_version), codec), None
    if operation == Op.DCB_APPEND:
        return encode(DcbAppendResult(position=results[0].last_position), codec), None
    return encode(results[0], codec), None


def _results(outcome: WriteOutcome) -> list[api.AppendResult]:
    if outcome.error is not None:
        raise error_from_body(outcome.error)
    if outcome.results is None:
        raise InternalError("the writer sent an empty outcome")
    return outcome.results
