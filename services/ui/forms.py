"""What the UI's forms and query strings ask for, checked before any request is sent: every
problem is a `FormError` naming the field and saying what is wrong, shown beside the form."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from esdb.client import ExpectedVersion
from esdb.contracts.filter_regexes import exactly
from esdb.contracts.topics import (
    all_events_subject,
    category_of,
    category_subject,
    event_type_subject,
    stream_subject,
)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""A store or subscription name: a NATS subject token (as the gateway checks it)."""
PAGE_SIZES = (20, 50, 100, 500)
DEFAULT_PAGE_SIZE = 50
MAX_FIELD_CHARS = 65_536
LIVE_KINDS = ("all", "category", "stream", "type")
SELECTOR_KINDS = ("all", "stream", "category", "event_type", "pattern")


class FormError(ValueError):
    """A field of a form or query string is not valid: `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def text(form: Mapping[str, str], field: str, *, required: bool = True) -> str:
    """A text field, stripped; `FormError` if required and empty, or absurdly long."""
    value = form.get(field, "").strip()
    if required and not value:
        raise FormError(field, f"{field.replace('_', ' ')} is required")
    if len(value) > MAX_FIELD_CHARS:
        raise FormError(field, f"{field.replace('_', ' ')} is longer than {MAX_FIELD_CHARS}")
    return value


def name(form: Mapping[str, str], field: str) -> str:
    """A store or subscription name."""
    value = text(form, field)
    if not NAME.fullmatch(value):
        raise FormError(
            field,
            f"{value!r} is not a valid name: 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit",
        )
    return value


def integer(
    form: Mapping[str, str], field: str, default: int, *, low: int = 0, high: int = 2**53
) -> int:
    """An optional whole number within [low, high]."""
    raw = form.get(field, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FormError(field, f"{field.replace('_', ' ')} must be a whole number") from None
    if not low <= value <= high:
        raise FormError(field, f"{field.replace('_', ' ')} must be from {low} to {high}")
    return value


def page_size(query: Mapping[str, str]) -> int:
    """How many rows a page shows: one of `PAGE_SIZES`."""
    size = integer(query, "limit", DEFAULT_PAGE_SIZE, low=1, high=max(PAGE_SIZES))
    if size not in PAGE_SIZES:
        raise FormError("limit", f"a page shows {', '.join(map(str, PAGE_SIZES))} rows")
    return size


def expected_version(form: Mapping[str, str], field: str = "expected_version") -> ExpectedVersion:
    """`any` (empty), `no_stream`, `stream_exists` or a version."""
    raw = form.get(field, "").strip()
    if raw in ("", "any"):
        return "any"
    if raw == "no_stream":
        return "no_stream"
    if raw == "stream_exists":
        return "stream_exists"
    try:
        version = int(raw)
    except ValueError:
        raise FormError(
            field, "expected version is a version, any, no_stream or stream_exists"
        ) from None
    if version < -1:
        raise FormError(field, "expected version must be -1 or more")
    return version


def json_object(form: Mapping[str, str], field: str) -> dict[str, Any]:
    """A JSON object typed into a text area (empty: `{}`)."""
    raw = text(form, field, required=False) or "{}"
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise FormError(
            field, f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from None
    if not isinstance(value, dict):
        raise FormError(field, "must be a JSON object ({...})")
    return value


@dataclass(frozen=True)
class LiveSelection:
    """Which events a live page follows: all of a store's, a category's, a stream's or an
    event type's."""

    kind: Literal["all", "category", "stream", "type"] = "all"
    value: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> LiveSelection:
        """From the live page's query string (`kind`, `value`)."""
        kind = query.get("kind", "all") or "all"
        if kind not in LIVE_KINDS:
            raise FormError("kind", f"follow one of {', '.join(LIVE_KINDS)}, not {kind!r}")
        if kind == "all":
            return cls()
        value = text(query, "value")
        return cls(kind, value)  # type: ignore[arg-type]

    def subject(self, store: str) -> str:
        """The live fan-out subject (a NATS wildcard) that selects these events."""
        if self.kind == "category":
            return category_subject(store, self.value)
        if self.kind == "stream":
            return stream_subject(store, self.value)
        if self.kind == "type":
            return event_type_subject(store, self.value)
        return all_events_subject(store)

    def read_filter(self) -> dict[str, Any] | None:
        """The same selection as a `read_all` filter, to catch up from the store."""
        if self.kind == "category":
            return {"category": self.value}
        if self.kind == "stream":
            return {"stream_regex": exactly(self.value)}
        if self.kind == "type":
            return {"event_types": [self.value]}
        return None

    def describe(self) -> str:
        """What is followed, in words."""
        if self.kind == "all":
            return "every event"
        what = {"category": "category", "stream": "stream", "type": "event type"}[self.kind]
        return f"{what} {self.value}"


@dataclass(frozen=True)
class StreamSearch:
    """The streams page's search: streams whose id starts with a prefix, or of a category
    (the id before its first `-`)."""

    mode: Literal["prefix", "category"] = "prefix"
    term: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> StreamSearch:
        """From the query string (`q`, `by`)."""
        mode = query.get("by", "prefix") or "prefix"
        if mode not in ("prefix", "category"):
            raise FormError("by", f"search by prefix or category, not {mode!r}")
        term = text(query, "q", required=False)
        if mode == "category" and not term:
            raise FormError("q", "name the category to search")
        return cls(mode, term)  # type: ignore[arg-type]

    def matches(self, stream: str) -> bool:
        """Whether `stream` is one of the results."""
        if self.mode == "category":
            return category_of(stream) == self.term
        return stream.startswith(self.term)

    def first_after(self) -> str | None:
        """An `after` for `list_streams` (exclusive, in byte order) that lists every match:
        just below the prefix; None (the first stream) without one."""
        if not self.term:
            return None
        encoded = self.term.encode()
        last = encoded[-1]
        if last == 0:
            return encoded[:-1].decode(errors="ignore") or None
        below = encoded[:-1] + bytes([last - 1])
        return below.decode(errors="ignore") + "\U0010ffff"

    def past(self, stream: str) -> bool:
        """Whether `stream` sorts after every match, so the listing can stop."""
        return (
            bool(self.term)
            and stream.encode() > self.term.encode()
            and not (stream.startswith(self.term))
        )


@dataclass(frozen=True)
class SubscriptionForm:
    """A persistent subscription to create."""

    name: str
    selector: dict[str, Any]
    start: int | Literal["start", "end"]
    message_timeout_ms: int
    max_retries: int
    max_in_flight: int

    @classmethod
    def parse(cls, form: Mapping[str, str]) -> SubscriptionForm:
        """From the create form."""
        subscription = name(form, "subscription")
        kind = form.get("selector", "all")
        if kind not in SELECTOR_KINDS:
            raise FormError("selector", f"select by one of {', '.join(SELECTOR_KINDS)}")
        selector: dict[str, Any] = {"all": True}
        if kind != "all":
            selector = {kind: text(form, "value")}
        raw_start = form.get("start", "start").strip() or "start"
        start: int | Literal["start", "end"]
        if raw_start in ("start", "end"):
            start = "start" if raw_start == "start" else "end"
        else:
            start = integer(form, "start", 0, low=1)
        return cls(
            name=subscription,
            selector=selector,
            start=start,
            message_timeout_ms=integer(form, "message_timeout_ms", 30_000, low=100),
            max_retries=integer(form, "max_retries", 10, low=0, high=1000),
            max_in_flight=integer(form, "max_in_flight", 100, low=1, high=10_000),
        )


@dataclass(frozen=True)
class StoreForm:
    """A store to create."""

    name: str
    description: str
    tags: list[str]

    @classmethod
    def parse(cls, form: Mapping[str, str]) -> StoreForm:
        """From the create form (`tags` comma-separated)."""
        tags = [tag.strip() for tag in form.get("tags", "").split(",") if tag.strip()]
        return cls(name(form, "store"), text(form, "description", required=False), tags)


@dataclass(frozen=True)
class ProjectionForm:
    """A projection to create or update: its name, JavaScript query, where it starts and
    whether it may emit."""

    name: str
    query: str
    start: str
    emit_enabled: bool

    @classmethod
    def parse(cls, form: Mapping[str, str]) -> ProjectionForm:
        """From the query editor (`emit_enabled` is a checkbox: present when ticked)."""
        start = form.get("start", "start")
        if start not in ("start", "end"):
            raise FormError("start", "start must be 'start' or 'end'")
        return cls(name(form, "projection"), text(form, "query"), start, "emit_enabled" in form)
