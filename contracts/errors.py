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
    APPEND_CONDITION_FAILED = "append_condition_failed"


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
    retryable: bool = False
    """Whether the same request may succeed if sent again (with the same event ids)."""

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

    @property
    def actual_version(self) -> int | None:
        """The version the stream is at (-1: no stream), as the server reported it."""
        return _int_detail(self.details, "actual_version")

    @property
    def expected_version(self) -> int | str | None:
        """What the request expected: a version, `"no_stream"`, `"stream_exists"`."""
        value = self.details.get("expected_version")
        return value if isinstance(value, int | str) else None

    @property
    def stream(self) -> str | None:
        """The stream whose version did not match."""
        return _str_detail(self.details, "stream")


class StreamNotFound(EsdbError):
    """The stream has no events."""

    code = ErrorCode.STREAM_NOT_FOUND

    @property
    def stream(self) -> str | None:
        """The stream named by the request."""
        return _str_detail(self.details, "stream")


class StreamDeleted(EsdbError):
    """The stream was tombstoned or deleted."""

    code = ErrorCode.STREAM_DELETED

    @property
    def stream(self) -> str | None:
        """The stream named by the request."""
        return _str_detail(self.details, "stream")


class NotFound(EsdbError):
    """The named thing (store, snapshot, subscription) does not exist."""

    code = ErrorCode.NOT_FOUND


class AlreadyExists(EsdbError):
    """The named thing already exists."""

    code = ErrorCode.ALREADY_EXISTS


class InvalidRequest(EsdbError):
    """The request is malformed; `details.field` names the offending field."""

    code = ErrorCode.INVALID_REQUEST

    @property
    def field(self) -> str | None:
        """The offending field, e.g. `events[2].data`."""
        return _str_detail(self.details, "field")


class TooLarge(EsdbError):
    """The request or an event in it is over a configured limit."""

    code = ErrorCode.TOO_LARGE

    @property
    def field(self) -> str | None:
        """The offending field, e.g. `events[2].data`."""
        return _str_detail(self.details, "field")


class IdempotencyConflict(EsdbError):
    """Some but not all of the request's event ids are already stored, or stored elsewhere."""

    code = ErrorCode.IDEMPOTENCY_CONFLICT


class Unauthorized(EsdbError):
    """The caller may not use this store or operation."""

    code = ErrorCode.UNAUTHORIZED


class Unavailable(EsdbError):
    """No service can take the request now (no leader, stepping down, storage full); retry."""

    code = ErrorCode.UNAVAILABLE
    retryable = True


class Timeout(EsdbError):
    """The request did not complete in time; an append may or may not have landed."""

    code = ErrorCode.TIMEOUT
    retryable = True


class AppendConditionFailed(EsdbError):
    """A `dcb_append` condition failed: an event after its `after` matches its query."""

    code = ErrorCode.APPEND_CONDITION_FAILED

    @property
    def position(self) -> int | None:
        """The position of the first event that matched."""
        return _int_detail(self.details, "position")


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
        AppendConditionFailed,
    )
}


def error_from_body(body: ErrorBody) -> EsdbError:
    """Rebuild the typed exception for a wire error."""
    cls = _BY_CODE.get(body.code, InternalError)
    return cls(body.message, **body.details)


def _int_detail(details: dict[str, Any], key: str) -> int | None:
    value = details.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_detail(details: dict[str, Any], key: str) -> str | None:
    value = details.get(key)
    return value if isinstance(value, str) else None


# The names Python users expect: one class per code, each also known as `<Code>Error`.
# The timeout class is `RequestTimeoutError`, as `TimeoutError` is a builtin.
WrongExpectedVersionError = WrongExpectedVersion
StreamNotFoundError = StreamNotFound
StreamDeletedError = StreamDeleted
NotFoundError = NotFound
AlreadyExistsError = AlreadyExists
InvalidRequestError = InvalidRequest
TooLargeError = TooLarge
IdempotencyConflictError = IdempotencyConflict
UnauthorizedError = Unauthorized
UnavailableError = Unavailable
RequestTimeoutError = Timeout
AppendConditionFailedError = AppendConditionFailed
