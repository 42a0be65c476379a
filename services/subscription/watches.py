"""Watches: payload-filtered live subscriptions, republished from this node's applied log."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from esdb.contracts.errors import InvalidRequest
from esdb.contracts.subscriptions import MAX_POSITION
from esdb.contracts.topics import EVENT_ID_HEADER, POSITION_HEADER
from esdb.contracts.watches import WatchRequest, WatchResult, watch_subject
from esdb.services.subscription.group import Publish
from esdb.shared.storage.port import Predicate, StoreReader
from esdb.shared.tasks import cancel_and_wait
from esdb.shared.wakeup import wait_any
from esdb.shared.wire import Codec, event_out

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()
_WATCH_ID = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
PAGE = 500
TICK_S = 0.25
TTL_RANGE_MS = (1_000, 600_000)


@dataclass(slots=True)
class _Watch:
    store: str
    subject: str
    predicate: Predicate | None
    after: int
    expires_at: float


class Watches:
    """Every open watch; one task publishes what each has not yet seen."""

    def __init__(self, publish: Publish, reader: Callable[[str], StoreReader]) -> None:
        self._publish = publish
        self._reader = reader
        self._watches: dict[str, _Watch] = {}
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()

    def open(self, store: str, request: WatchRequest, predicate: Predicate | None) -> WatchResult:
        """Open a watch, or renew (or recreate, after a failover) the named one."""
        low, high = TTL_RANGE_MS
        if not low <= request.ttl_ms <= high:
            raise InvalidRequest(f"ttl_ms must be between {low} and {high}", field="ttl_ms")
        if request.watch is not None and not _WATCH_ID.match(request.watch):
            raise InvalidRequest("watch ids are 1 to 64 letters, digits, '_' or '-'", field="watch")
        if request.after is not None and not 0 <= request.after <= MAX_POSITION:
            raise InvalidRequest(
                f"after must be a position from 0 to {MAX_POSITION}", field="after"
            )
        expires_at = time.monotonic() + request.ttl_ms / 1000
        name = request.watch or uuid.uuid4().hex
        watch = self._watches.get(name)
        if watch is None or watch.store != store:
            after = request.after
            if after is None:
                after = self._reader(store).last_position()
            watch = _Watch(store, watch_subject(store, name), predicate, after, expires_at)
            self._watches[name] = watch
            self._kick.set()
        watch.expires_at = expires_at
        return WatchResult(watch=name, subject=watch.subject, after=watch.after)

    @property
    def open_count(self) -> int:
        """How many watches are open."""
        return len(self._watches)

    def start(self, wakeup: Callable[[], asyncio.Event]) -> None:
        """Publish until `stop`; `wakeup` returns the event the next applied entry sets."""
        self._task = asyncio.create_task(self._run(wakeup))

    async def stop(self) -> None:
        """Stop publishing and forget every watch (their clients renew elsewhere)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self._watches.clear()

    async def _run(self, wakeup: Callable[[], asyncio.Event]) -> None:
        while True:
            ticket = wakeup()
            self._kick.clear()
            busy = False
            now = time.monotonic()
            for name, watch in list(self._watches.items()):
                if watch.expires_at <= now:
                    del self._watches[name]
                    continue
                try:
                    busy |= await self._publish_new(watch)
                except Exception:
                    log.exception("watch %s failed; it is dropped", name)
                    self._watches.pop(name, None)
            if not busy:
                await wait_any(ticket, self._kick, timeout=TICK_S)

    async def _publish_new(self, watch: _Watch) -> bool:
        """Publish a page of new matches; whether there may be more."""
        reader = self._reader(watch.store)
        last = reader.last_position()
        if watch.after >= last:
            return False
        records, next_position = reader.read_all(
            watch.after + 1, backward=False, limit=PAGE, predicate=watch.predicate
        )
        for record in records:
            out = event_out(record, Codec.JSON)
            headers = {POSITION_HEADER: str(record.position), EVENT_ID_HEADER: out.event_id}
            await self._publish(watch.subject, _json.encode(out), headers, "")
        if next_position is None:
            watch.after = max(last, records[-1].position if records else 0)
            return False
        watch.after = next_position - 1
        return True
