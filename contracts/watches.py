"""Watches: transient subscriptions the subscription service filters (contract).

A watch selects like a persistent subscription (stream, category, event type, pattern or all,
plus `payload` conditions on the JSON data) but keeps no state in the log: the service
beside the writer leader republishes every matching event, in position order, on the watch's
own subject. The client renews it (the same request with `watch` set and `after` = the last
position it received) well within `ttl_ms`; a renewal that reaches a new leader's service
recreates it from `after`, so nothing is missed across a failover.
"""

from __future__ import annotations

import msgspec

from esdb.contracts.subscriptions import SUBS_PREFIX, SelectorSpec

WATCH_TOKEN = "_watch"
DEFAULT_WATCH_TTL_MS = 30_000


def watch_subject(store: str, watch: str) -> str:
    """Where a watch's events are published."""
    return f"{SUBS_PREFIX}.{store}.{WATCH_TOKEN}.{watch}"


class WatchRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.watch`: open a watch, or renew the one named by `watch`."""

    selector: SelectorSpec
    watch: str | None = None
    after: int | None = None
    """Publish events after this position (default: the store's end when opened)."""
    ttl_ms: int = DEFAULT_WATCH_TTL_MS
    timeout_ms: int | None = None


class WatchResult(msgspec.Struct, kw_only=True):
    """The watch's id and subject, and the position it publishes after."""

    watch: str
    subject: str
    after: int
