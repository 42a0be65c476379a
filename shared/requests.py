"""What every public request is checked for before its body is decoded: the subject names a
store and an operation, the store name is valid, the body is within the request limit.

Shared by the gateway and by the writer leader and readers, which serve the writes and reads
the servers' subject mapping routes straight to them."""

from __future__ import annotations

from esdb.contracts.errors import InvalidRequest, TooLarge
from esdb.shared.names import check_store
from esdb.shared.settings import Settings


def target(subject: str) -> tuple[str, str]:
    """(store, operation) of `<prefix>.<prefix>.<store>.<operation>`."""
    tokens = subject.split(".")
    if len(tokens) != 4:
        raise InvalidRequest(
            f"subject {subject!r} is not esdb.api.<store>.<operation>", field="subject"
        )
    return tokens[2], tokens[3]


def check_request(store: str, data: bytes, settings: Settings) -> None:
    """The store name is valid and the body within the request limit."""
    check_store(store)
    if len(data) > settings.max_request_bytes:
        raise TooLarge(
            f"request is {len(data)} bytes; the limit is {settings.max_request_bytes}",
            field="body",
            limit=settings.max_request_bytes,
        )
