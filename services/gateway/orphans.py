"""Answers writes a dead leader can no longer answer, once the lease moves on.

Writes go from the servers straight to the writer leader (services/writer/DESIGN.md). If that
leader dies (kill -9, a lost node) with writes in hand, nobody would ever answer them and each
client would wait out its own timeout. So the gateways also take a copy of every write (a
queue group of their own: one gateway per write) and remember where to answer it until its
`timeout_ms` has passed. A leader announces on `WRITER_SERVING` once its front takes writes;
then each write that arrived before the announcement, and whose deadline has not passed, gets
`timeout` (outcome unknown; retry with the same event ids): it went to an earlier leader or to
none. Every gateway's cluster view hears the announcement, and each gateway answers the copies
it holds. A write that was answered gets a second reply, which request-reply clients drop (the
first reply wins). The copy costs the gateway one message per write, but it keeps a leader's
death from turning into every client's full timeout (`esdb bench --nodes 3 --scenario
failover`: without it the first ack after a kill came at 4.05 s, the clients' own timeout).
Writes sent straight to `esdb.leader.<store>.<op>` (the Python client's) are not copied: their
client hears the announcement itself."""

from __future__ import annotations

import time
from collections import deque

from esdb.contracts.errors import Timeout
from esdb.services.gateway.ports import Publish
from esdb.shared.settings import Settings
from esdb.shared.validation import timeout_ms_of
from esdb.shared.wire import Codec, encode_error

ORPHAN_QUEUE = "esdb-gateway-orphans"


class OrphanWatch:
    """Remembers the reply subject of each write until its deadline; `leader_serving`
    answers every one still waiting `timeout`."""

    def __init__(self, publish: Publish, settings: Settings) -> None:
        self._publish = publish
        self._default_s = settings.timeout_ms / 1000
        self._longest_s = settings.max_timeout_ms / 1000
        self._waiting: deque[tuple[float, str, Codec]] = deque()  # deadline, reply, codec

    def remember(self, reply: str, data: bytes, codec: Codec) -> None:
        """A copy of a write the servers routed to the leader, to be answered at `reply`."""
        now = time.monotonic()
        timeout_ms = timeout_ms_of(data, codec)
        wait_s = self._default_s if timeout_ms is None else min(timeout_ms / 1000, self._longest_s)
        self._waiting.append((now + wait_s, reply, codec))
        # Oldest first; a long deadline at the head holds the rest for at most its own wait.
        while self._waiting and self._waiting[0][0] < now:
            self._waiting.popleft()

    @property
    def waiting(self) -> int:
        """Writes remembered (some already answered by the leader)."""
        return len(self._waiting)

    async def leader_serving(self) -> int:
        """Answer `timeout` to every write that arrived before now and may still be waiting;
        how many were answered."""
        now = time.monotonic()
        waiting, self._waiting = self._waiting, deque()
        error = Timeout(
            "the writer leader changed; the outcome is unknown: retry with the same ids"
        )
        encoded = {codec: encode_error(error, codec) for codec in Codec}
        answered = 0
        for deadline, reply, codec in waiting:
            if deadline > now:
                await self._publish(reply, encoded[codec])
                answered += 1
        return answered
