"""Live fan-out subjects (contract): `esdb.events.<store>.<category>.<stream>.<event_type>`.

Every stream id and event type becomes one subject token: bytes outside `[A-Za-z0-9_-]` are
written `%XX` (uppercase hex of the UTF-8 bytes), and an empty token is `%`. So NATS
wildcards filter: a stream is `esdb.events.<store>.<category>.<stream>.*`, a category
`esdb.events.<store>.<category>.>`, an event type `esdb.events.<store>.*.*.<type>`."""

from __future__ import annotations

import re

EVENTS_PREFIX = "esdb.events"

# Headers of every fan-out message, in this order; subscribers deduplicate by position. The
# payload is the event's `EventOut` in JSON, as `read_stream` returns it. The emitter writes
# these bytes itself (`services/emitter/messages.py`); `tests/unit/test_emitter_messages.py`
# pins them against the `EventOut` encoding.
POSITION_HEADER = "Esdb-Position"
EVENT_ID_HEADER = "Esdb-Event-Id"

_SAFE = re.compile(r"[A-Za-z0-9_-]*")


def category_of(stream: str) -> str:
    """The part of a stream id before its first `-` (the whole id when there is none)."""
    return stream.split("-", 1)[0]


def escape_token(value: str) -> str:
    """`value` as a single, wildcard-free subject token."""
    if not value:
        return "%"
    if _SAFE.fullmatch(value):
        return value
    return "".join(
        ch if _SAFE.fullmatch(ch) else "".join(f"%{b:02X}" for b in ch.encode()) for ch in value
    )


def unescape_token(token: str) -> str:
    """The value `escape_token` turned into `token`."""
    if token == "%":
        return ""
    if "%" not in token:
        return token
    out = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "%":
            out.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            out.extend(token[i].encode())
            i += 1
    return out.decode()


def event_subject(store: str, stream: str, event_type: str) -> str:
    """Where the leader-emitter publishes an event."""
    return (
        f"{EVENTS_PREFIX}.{store}.{escape_token(category_of(stream))}."
        f"{escape_token(stream)}.{escape_token(event_type)}"
    )


def stream_subject(store: str, stream: str) -> str:
    """Every event of one stream."""
    return f"{EVENTS_PREFIX}.{store}.{escape_token(category_of(stream))}.{escape_token(stream)}.*"


def category_subject(store: str, category: str) -> str:
    """Every event of a category."""
    return f"{EVENTS_PREFIX}.{store}.{escape_token(category)}.>"


def event_type_subject(store: str, event_type: str) -> str:
    """Every event of one type."""
    return f"{EVENTS_PREFIX}.{store}.*.*.{escape_token(event_type)}"


def all_events_subject(store: str) -> str:
    """Every event of a store."""
    return f"{EVENTS_PREFIX}.{store}.>"
