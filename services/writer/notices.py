"""This node's applied notices: one message per applied entry, published only while a service
on the node hears them.

Readers waiting for a `min_position` and the subscription service beside the leader hear
them; most of the time nothing does, and a notice to no one still cost each writer a socket
write per entry and its server a message (a follower's profile under `esdb bench --nodes 3`:
8 % of its samples in the socket write). A service that hears says so on
`node_hearing_subject` when it starts and every `HEARING_RENEW_S` after; the writer publishes
for `HEARING_TTL_S` past the last word, and answers each with the sequence it has applied,
so the service misses no entry applied before it was heard."""

from __future__ import annotations

import time
from collections.abc import Callable

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from esdb.contracts.subjects import node_applied_subject, node_hearing_subject
from esdb.shared.cluster_view import HEARING_TTL_S


class AppliedNotices:
    """Announces applied sequences on `node_applied_subject` while someone hears them."""

    def __init__(
        self,
        nc: NatsClient,
        node_id: str,
        applied: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nc = nc
        self._node_id = node_id
        self._subject = node_applied_subject(node_id)
        self._applied = applied
        self._clock = clock
        self._heard_until = -1.0

    async def start(self) -> None:
        """Listen for services that hear."""
        await self._nc.subscribe(node_hearing_subject(self._node_id), cb=self._on_hearing)

    @property
    def heard(self) -> bool:
        """Whether a service said it hears within `HEARING_TTL_S`."""
        return self._clock() < self._heard_until

    async def _on_hearing(self, msg: Msg) -> None:
        self._heard_until = self._clock() + HEARING_TTL_S
        if msg.reply:
            await self._nc.publish(msg.reply, str(self._applied()).encode())

    async def announce(self, sequence: int) -> None:
        """Publish that `sequence` is applied, if anyone hears."""
        if self.heard:
            await self._nc.publish(self._subject, str(sequence).encode())
