"""One exception class per error code, known by the `...Error` names Python users expect."""

from __future__ import annotations

import esdb.client
from esdb.client import (
    EsdbError,
    InvalidRequestError,
    RequestTimeoutError,
    StreamNotFoundError,
    WrongCurrentVersionError,
    WrongExpectedVersion,
    WrongExpectedVersionError,
)
from esdb.contracts.errors import ErrorBody, ErrorCode, error_from_body

EXPECTED_NAMES = {
    ErrorCode.WRONG_EXPECTED_VERSION: "WrongExpectedVersionError",
    ErrorCode.STREAM_NOT_FOUND: "StreamNotFoundError",
    ErrorCode.STREAM_DELETED: "StreamDeletedError",
    ErrorCode.NOT_FOUND: "NotFoundError",
    ErrorCode.ALREADY_EXISTS: "AlreadyExistsError",
    ErrorCode.INVALID_REQUEST: "InvalidRequestError",
    ErrorCode.TOO_LARGE: "TooLargeError",
    ErrorCode.IDEMPOTENCY_CONFLICT: "IdempotencyConflictError",
    ErrorCode.UNAUTHORIZED: "UnauthorizedError",
    ErrorCode.UNAVAILABLE: "UnavailableError",
    ErrorCode.TIMEOUT: "RequestTimeoutError",
    ErrorCode.INTERNAL: "InternalError",
    ErrorCode.APPEND_CONDITION_FAILED: "AppendConditionFailedError",
}


def test_every_code_has_one_error_class_under_its_expected_name() -> None:
    assert set(EXPECTED_NAMES) == set(ErrorCode)
    for code, name in EXPECTED_NAMES.items():
        cls = getattr(esdb.client, name)
        assert name in esdb.client.__all__
        assert issubclass(cls, EsdbError)
        assert cls.code is code
        assert type(error_from_body(ErrorBody(code.value, "m"))) is cls


def test_the_old_names_are_the_same_classes() -> None:
    assert WrongExpectedVersionError is WrongExpectedVersion is WrongCurrentVersionError
    assert RequestTimeoutError is esdb.client.Timeout
    assert RequestTimeoutError is not TimeoutError


def test_a_wrong_expected_version_carries_the_actual_version() -> None:
    body = ErrorBody(
        "wrong_expected_version",
        "stream 'a' is at version 4, expected 2",
        {"stream": "a", "actual_version": 4, "expected_version": 2},
    )
    error = error_from_body(body)
    assert isinstance(error, WrongExpectedVersionError)
    assert (error.actual_version, error.expected_version, error.stream) == (4, 2, "a")
    assert error.details["actual_version"] == 4


def test_missing_details_read_as_none() -> None:
    error = WrongExpectedVersionError("no details")
    assert (error.actual_version, error.expected_version, error.stream) == (None, None, None)


def test_stream_and_field_details_are_properties() -> None:
    assert StreamNotFoundError("m", stream="s").stream == "s"
    assert InvalidRequestError("m", field="events[2].data").field == "events[2].data"


def test_only_unavailable_and_timeout_are_retryable() -> None:
    retryable = {cls.code for cls in map(type, _one_of_each()) if cls.retryable}
    assert retryable == {ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT}


def _one_of_each() -> list[EsdbError]:
    return [error_from_body(ErrorBody(code.value, "m")) for code in ErrorCode]
