"""The Python client of esdb: `async with Client.connect(url) as client: ...`, or blocking,
`with SyncClient.connect(url) as client: ...`, with the same method names; `url` is
`esdb://host:4222?store=NAME` or a NATS URL. Every error code is one exception class, e.g.
`WrongExpectedVersionError`; kurrentdbclient's names work too (`append_to_stream`, ...)."""

from __future__ import annotations

from esdb.client.aggregator import Overwrite, Sum, finalize, foldl
from esdb.client.client import Client, Connecting
from esdb.client.connection import DEFAULT_URL
from esdb.client.connection_string import InvalidConnectionString, parse_connection_string
from esdb.client.events import (
    AppendSpec,
    ExpectedVersion,
    NewEvent,
    ReadAllPage,
    ReadStreamPage,
    RecordedEvent,
)
from esdb.client.kurrent_names import (
    KurrentRecordedEvent,
    StreamState,
    WrongCurrentVersionError,
)
from esdb.client.retry import RetryPolicy
from esdb.client.subscription import CaughtUp, Subscription, SubscriptionDropped
from esdb.client.sync import SyncClient
from esdb.contracts.api import (
    AppendResult,
    ClusterStatus,
    Health,
    ListStreamsResult,
    NodeStatus,
    ReadFilter,
    StreamInfoResult,
    StreamSummary,
)
from esdb.contracts.errors import (
    AlreadyExists,
    AlreadyExistsError,
    ErrorCode,
    EsdbError,
    IdempotencyConflict,
    IdempotencyConflictError,
    InternalError,
    InvalidRequest,
    InvalidRequestError,
    NotFound,
    NotFoundError,
    RequestTimeoutError,
    StreamDeleted,
    StreamDeletedError,
    StreamNotFound,
    StreamNotFoundError,
    Timeout,
    TooLarge,
    TooLargeError,
    Unauthorized,
    UnauthorizedError,
    Unavailable,
    UnavailableError,
    WrongExpectedVersion,
    WrongExpectedVersionError,
)
from esdb.contracts.filter_regexes import exactly, not_starting_with

__all__ = [
    "DEFAULT_URL",
    "AlreadyExists",
    "AlreadyExistsError",
    "AppendResult",
    "AppendSpec",
    "CaughtUp",
    "Client",
    "ClusterStatus",
    "Connecting",
    "ErrorCode",
    "EsdbError",
    "ExpectedVersion",
    "Health",
    "IdempotencyConflict",
    "IdempotencyConflictError",
    "InternalError",
    "InvalidConnectionString",
    "InvalidRequest",
    "InvalidRequestError",
    "KurrentRecordedEvent",
    "ListStreamsResult",
    "NewEvent",
    "NodeStatus",
    "NotFound",
    "NotFoundError",
    "Overwrite",
    "ReadAllPage",
    "ReadFilter",
    "ReadStreamPage",
    "RecordedEvent",
    "RequestTimeoutError",
    "RetryPolicy",
    "StreamDeleted",
    "StreamDeletedError",
    "StreamInfoResult",
    "StreamNotFound",
    "StreamNotFoundError",
    "StreamState",
    "StreamSummary",
    "Subscription",
    "SubscriptionDropped",
    "Sum",
    "SyncClient",
    "Timeout",
    "TooLarge",
    "TooLargeError",
    "Unauthorized",
    "UnauthorizedError",
    "Unavailable",
    "UnavailableError",
    "WrongCurrentVersionError",
    "WrongExpectedVersion",
    "WrongExpectedVersionError",
    "exactly",
    "finalize",
    "foldl",
    "not_starting_with",
    "parse_connection_string",
]
