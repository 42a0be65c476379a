"""What a subscription selects: its live fan-out subject, and the same set of events in the store.

A selector is one of a stream, a category, an event type, a raw NATS wildcard pattern or the
whole store. Live events come from the subject (`contracts.topics`); history comes from
`read_stream` for a stream and from `read_all` with a server-side filter otherwise, so both
halves of a catch-up subscription see the same events.
"""

from __future__ import annotations

from dataclasses import dataclass

from esdb.contracts.api import ReadFilter
from esdb.contracts.commands import DcbItem
from esdb.contracts.dcb import DCB_STREAM
from esdb.contracts.dcb import matches as dcb_matches
from esdb.contracts.errors import InvalidRequest
from esdb.contracts.filter_regexes import exactly
from esdb.contracts.topics import (
    EVENTS_PREFIX,
    all_events_subject,
    category_subject,
    event_subject,
    event_type_subject,
    stream_subject,
    unescape_token,
)

# Tokens of an event subject after `esdb.events.<store>.`: category, stream, event type.
_EVENT_TOKENS = 3


@dataclass(frozen=True, slots=True)
class Selector:
    """The events one subscription receives, live and from the store."""

    store: str
    subject: str
    """The NATS subject (with wildcards) the live events arrive on."""
    stream: str | None = None
    """Set for a single-stream selector: history comes from `read_stream`."""
    filter: ReadFilter | None = None
    """The `read_all` filter that selects the same events as `subject` (or a superset of
    them when `pattern` is set, which then narrows them on the client)."""
    pattern: tuple[str, ...] | None = None
    """The wildcard tokens of a raw pattern, matched on the client against history."""
    dense: bool = False
    """Every event of the store is selected, so consecutive events have consecutive
    positions and a missing one is visible as a gap."""
    query: tuple[DcbItem, ...] | None = None
    """Set for a DCB query: the `$dcb` stream's events that match it, checked by whoever
    receives them (live subjects and `read_all` filters know nothing of tags)."""

    def matches(self, stream: str, event_type: str, tags: tuple[str, ...] = ()) -> bool:
        """Whether an event read from the store (or received live) belongs to this selector."""
        if self.query is not None:
            return stream == DCB_STREAM and dcb_matches(self.query, event_type, tags)
        if self.pattern is None:
            return True
        subject = event_subject(self.store, stream, event_type)
        tokens = subject.split(".")[len(EVENTS_PREFIX.split(".")) + 1 :]
        return tokens_match(self.pattern, tokens)


def select(
    store: str,
    *,
    stream: str | None = None,
    category: str | None = None,
    event_type: str | None = None,
    pattern: str | None = None,
    all: bool = False,
    query: tuple[DcbItem, ...] | None = None,
) -> Selector:
    """The selector named by exactly one of the arguments; `InvalidRequest` otherwise."""
    given = [
        name
        for name, value in (
            ("stream", stream),
            ("category", category),
            ("event_type", event_type),
            ("pattern", pattern),
            ("query", query),
        )
        if value is not None
    ] + (["all"] if all else [])
    if len(given) != 1:
        raise InvalidRequest(
            "give exactly one of stream, category, event_type, pattern, query or all=True"
            + (f" (got {', '.join(given)})" if given else ""),
            field="selector",
        )
    if stream is not None:
        return Selector(store, stream_subject(store, stream), stream=stream)
    if category is not None:
        return Selector(
            store, category_subject(store, category), filter=ReadFilter(category=category)
        )
    if event_type is not None:
        return Selector(
            store,
            event_type_subject(store, event_type),
            filter=ReadFilter(event_types=[event_type]),
        )
    if pattern is not None:
        tokens = _pattern_tokens(pattern)
        return Selector(
            store,
            f"{EVENTS_PREFIX}.{store}.{pattern}",
            filter=_pattern_filter(tokens),
            pattern=tokens,
        )
    if query is not None:
        return Selector(
            store,
            stream_subject(store, DCB_STREAM),
            filter=ReadFilter(stream_prefix=DCB_STREAM, stream_regex=exactly(DCB_STREAM)),
            query=query,
        )
    return Selector(store, all_events_subject(store), dense=True)


def tokens_match(pattern: tuple[str, ...], tokens: list[str]) -> bool:
    """NATS subject matching: `*` is any one token, a final `>` is one or more tokens."""
    for i, want in enumerate(pattern):
        if want == ">":
            return len(tokens) > i
        if i >= len(tokens) or (want != "*" and want != tokens[i]):
            return False
    return len(tokens) == len(pattern)


def _pattern_tokens(pattern: str) -> tuple[str, ...]:
    tokens = tuple(pattern.split("."))
    problem = None
    if any(not token for token in tokens):
        problem = "has an empty token"
    elif ">" in tokens[:-1]:
        problem = "has '>' before its last token"
    elif any(token not in ("*", ">") and ("*" in token or ">" in token) for token in tokens):
        problem = "has a wildcard inside a token (wildcards are whole tokens)"
    elif len(tokens) > _EVENT_TOKENS or (len(tokens) < _EVENT_TOKENS and tokens[-1] != ">"):
        problem = "cannot match <category>.<stream>.<event_type>"
    if problem is not None:
        raise InvalidRequest(f"pattern {pattern!r} {problem}", field="pattern")
    return tokens


def _pattern_filter(tokens: tuple[str, ...]) -> ReadFilter | None:
    """A server-side filter for the literal tokens of a pattern, so history reads fetch
    only candidates; the client checks each against the full pattern."""
    try:
        literal = [
            unescape_token(token) if token not in ("*", ">") else None
            for token in tokens[:_EVENT_TOKENS]
        ]
    except (ValueError, IndexError) as e:
        raise InvalidRequest(
            f"pattern {'.'.join(tokens)!r} has a badly escaped token: {e}", field="pattern"
        ) from e
    literal += [None] * (_EVENT_TOKENS - len(literal))
    category, stream, event_type = literal
    if category is None and stream is None and event_type is None:
        return None
    return ReadFilter(
        category=category,
        # The prefix is the cheap check the reader makes first; the regex makes it exact.
        stream_prefix=stream,
        stream_regex=None if stream is None else exactly(stream),
        event_types=None if event_type is None else [event_type],
    )
