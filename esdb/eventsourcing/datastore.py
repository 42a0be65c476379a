"""`EsdbDatastore`: the connection that a factory's recorders share, and what they learn
about the store as they go (stream bases, tracking heads, the highest position seen)."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol, TypeVar

from esdb.client import SyncClient

T = TypeVar("T")

PAGE_SIZE = 1000
"""Events per read request at most: a library read of 1,000 notifications (a common section
size) is then one request, not two. The reader cuts a page short when its reply would not fit
in one NATS message, so large events cost nothing extra."""

BASES_CACHED = 10_000


@dataclass(frozen=True, slots=True)
class TrackingHead:
    """The last record of a tracking stream: its stream version (-1: no stream) and the
    notification id it tracks (None: no record)."""

    version: int
    notification_id: int | None


NO_TRACKING = TrackingHead(-1, None)


class Stoppable(Protocol):
    """A subscription the datastore ends when it closes."""

    def stop(self) -> None: ...


class EsdbDatastore:
    """One connection to one store, shared by the recorders of one factory (and by the
    threads using them)."""

    def __init__(self, client: SyncClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._position = 0
        self._bases: OrderedDict[str, int] = OrderedDict()
        self._tracking: dict[str, TrackingHead] = {}
        self._subscriptions: weakref.WeakSet[Stoppable] = weakref.WeakSet()

    @classmethod
    def connect(cls, url: str, store: str) -> EsdbDatastore:
        """Connect to `store` at `url` (a NATS URL or `esdb://` connection string)."""
        return cls(SyncClient.connect(url, store=store))

    @property
    def store(self) -> str:
        """The store the recorders use."""
        return self.client.store

    def saw(self, position: int) -> None:
        """Note a position this process wrote or read."""
        with self._lock:
            if position > self._position:
                self._position = position

    @property
    def min_position(self) -> int | None:
        """What reads wait for, so that they see this process's own writes on any node."""
        return self._position or None

    def base(self, stream: str) -> int | None:
        """The originator version at stream version 0 of `stream`, if known."""
        with self._lock:
            base = self._bases.get(stream)
            if base is not None:
                self._bases.move_to_end(stream)
            return base

    def learn_base(self, stream: str, base: int) -> None:
        """Remember a stream's base (a stream's base never changes)."""
        with self._lock:
            self._bases[stream] = base
            self._bases.move_to_end(stream)
            while len(self._bases) > BASES_CACHED:
                self._bases.popitem(last=False)

    def tracking_head(self, stream: str) -> TrackingHead | None:
        """The head of a tracking stream as this process last saw it, if it did."""
        with self._lock:
            return self._tracking.get(stream)

    def learn_tracking_head(self, stream: str, head: TrackingHead | None) -> None:
        """Remember (or, with None, forget) the head of a tracking stream; an older head
        than the one remembered is ignored."""
        with self._lock:
            if head is None:
                self._tracking.pop(stream, None)
                return
            known = self._tracking.get(stream)
            if known is None or head.version > known.version:
                self._tracking[stream] = head

    def opened(self, subscription: Stoppable) -> None:
        """Stop `subscription` when the datastore closes."""
        self._subscriptions.add(subscription)

    def close(self) -> None:
        """End the subscriptions, let calls in flight finish, refuse new ones, and close the
        connection."""
        for subscription in list(self._subscriptions):
            subscription.stop()
        self.client.close()
