"""The async Python client of esdb: `async with Client.connect(url) as client: ...`."""

from __future__ import annotations

from esdb.client.aggregator import Overwrite, Sum, finalize, foldl
from esdb.client.client import Client, Connecting
from esdb.client.connection import DEFAULT_URL
from esdb.client.events import (
    AppendSpec,
    ExpectedVersion,
    NewEvent,
    ReadAllPage,
    ReadStreamPage,
    RecordedEvent,
)
from esdb.client.subscription import CaughtUp, Subscription, SubscriptionDropped
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
    ErrorCode,
    EsdbError,
    IdempotencyConflict,
    InternalError,
    InvalidRequest,
    NotFound,
    StreamDeleted,
    StreamNotFound,
    Timeout,
    TooLarge,
    Unauthorized,
    Unavailable,
    WrongExpectedVersion,
)

__all__ = [
    "DEFAULT_URL",
    "AlreadyExists",
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
    "InternalError",
    "InvalidRequest",
    "ListStreamsResult",
    "NewEvent",
    "NodeStatus",
    "NotFound",
    "Overwrite",
    "ReadAllPage",
    "ReadFilter",
    "ReadStreamPage",
    "RecordedEvent",
    "StreamDeleted",
    "StreamInfoResult",
    "StreamNotFound",
    "StreamSummary",
    "Subscription",
    "SubscriptionDropped",
    "Sum",
    "Timeout",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "WrongExpectedVersion",
    "finalize",
    "foldl",
]
