"""Error codes (contract) and the one exception hierarchy that carries them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec


class ErrorCode(StrEnum):
    """Typed error codes on the wire; clients branch on these, never on message text."""

    WRONG_EXPECTED_VERSION = "wrong_expected_version"
    STREAM_NOT_FOUND = "stream_not_found"
    STREAM_DELETED = "stream_deleted"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    INVALID_REQUEST = "invalid_request"
    TOO_LARGE = "too_large"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    UNAUTHORIZED = "unauthorized"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    INTERNAL = "internal"


class ErrorBody(msgspec.Struct, frozen=True):
    """The `error` object of a failed reply."""

    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorReply(msgspec.Struct, frozen=True):
    """A failed reply: `{"error": {...}}`."""

    error: ErrorBody


class EsdbError(Exception):
    """Base of every error esdb raises; carries a wire code, a message and details."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> ErrorBody:
        """The wire form of this error."""
        return ErrorBody(code=self.code.value, message=self.message, details=self.details)


class WrongExpectedVersion(EsdbError):
    """The stream is not at the version the request expected."""

    code = ErrorCode.WRONG_EXPECTED_VERSION


class StreamNotFound(EsdbError):
    """The stream has no events."""

    code = ErrorCode.STREAM_NOT_FOUND


class StreamDeleted(EsdbError):
    """The stream was tombstoned or deleted."""

    code = ErrorCode.STREAM_DELETED


class NotFound(EsdbError):
    """The named thing (store, snapshot, subscription) does not exist."""

    code = ErrorCode.NOT_FOUND


class AlreadyExists(EsdbError):
    """The named thing already exists."""

    code = ErrorCode.ALREADY_EXISTS


class InvalidRequest(EsdbError):
    """The request is malformed; `details.field` names the offending field."""

    code = ErrorCode.INVALID_REQUEST


class TooLarge(EsdbError):
    """The request or an event in it is over a configured limit."""

    code = ErrorCode.TOO_LARGE


class IdempotencyConflict(EsdbError):
    """Some but not all of the request's event ids are already stored, or stored elsewhere."""

    code = ErrorCode.IDEMPOTENCY_CONFLICT


class Unauthorized(EsdbError):
    """The caller may not use this store or operation."""

    code = ErrorCode.UNAUTHORIZED


class Unavailable(EsdbError):
    """No service can take the request now (no leader, stepping down, storage full); retry."""

    code = ErrorCode.UNAVAILABLE


class Timeout(EsdbError):
    """The request did not complete in time; an append may or may not have landed."""

    code = ErrorCode.TIMEOUT


class InternalError(EsdbError):
    """An unexpected server fault; details are in the server log."""

    code = ErrorCode.INTERNAL


_BY_CODE: dict[str, type[EsdbError]] = {
    cls.code.value: cls
    for cls in (
        WrongExpectedVersion,
        StreamNotFound,
        StreamDeleted,
        NotFound,
        AlreadyExists,
        InvalidRequest,
        TooLarge,
        IdempotencyConflict,
        Unauthorized,
        Unavailable,
        Timeout,
        InternalError,
    )
}


def error_from_body(body: ErrorBody) -> EsdbError:
    """Rebuild the typed exception for a wire error."""
    cls = _BY_CODE.get(body.code, InternalError)
    return cls(body.message, **body.details)
