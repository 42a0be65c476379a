"""One view of the cluster for every service: who holds the writer lease, whether this node's
writer leads and has applied the whole log, and how far this node has applied the log.

`NatsClusterView` keeps it current from NATS: a watch of the lease key, the leader's
announcement that it takes writes (`WRITER_SERVING`), and this node's applied notices.
`MemoryClusterView` is its twin for unit tests, driven by the test."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from types import TracebackType

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from esdb.contracts.api import LogState, NodeStatus, ReplicaState
from esdb.contracts.errors import Timeout, Unavailable
from esdb.contracts.subjects import (
    LEASE_BUCKET,
    LEASE_KEY,
    LOG_STREAM,
    MEMBERS_BUCKET,
    NODE_STATUS,
    WRITER_SERVING,
    lease_holder,
    lease_value,
    node_applied_subject,
    node_hearing_subject,
)
from esdb.shared.membership import Member, all_members
from esdb.shared.nats_connection import gather_replies, unsubscribe
from esdb.shared.tasks import cancel_and_wait
from esdb.shared.wakeup import Wakeup, wait_any

log = logging.getLogger(__name__)

APPLIED_POLL_S = 0.05
"""A lost applied notice (the writer restarted between apply and publish) costs at most this."""
HEARING_RENEW_S = 1.0
"""How often a view that hears applied notices tells its writer so (`node_hearing_subject`)."""
HEARING_TTL_S = 3.5
"""How long a writer goes on publishing applied notices after it was last told."""
STATUS_WINDOW_S = 0.3
"""How long a node's writer has to answer a status request."""
PROBE_EVERY_S = 0.5
"""How often to ask this node's writer whether it serves, while it holds the lease but has not
announced it (it is catching up, or the announcement was lost in a reconnect)."""
RECHECK_S = 0.1
"""How often to look again at a lease that outlived its TTL without renewal."""
WATCH_RETRY_S = (0.1, 2.0)


@dataclass(frozen=True, slots=True)
class Leadership:
    """The writer lease and the leader's announcements, as one view last saw them."""

    lease: bytes | None = None
    """The lease key's value (holder node and its writer's run); None while nobody holds it."""
    serving: bool = False
    """Whether the holder's writer announced, under this lease, that it takes writes."""
    announcements: int = 0
    """Leader announcements heard so far: each is a writer that began to take writes."""

    @property
    def holder(self) -> str | None:
        """The node whose writer holds the lease."""
        return lease_holder(self.lease)


class ClusterView(abc.ABC):
    """What a service knows of the cluster, and waits on; kept current by a subclass."""

    def __init__(self, node_id: str | None, applied_on_disk: Callable[[], int] | None) -> None:
        self.node_id = node_id
        self._leadership = Leadership()
        self._changes = Wakeup()
        self._applied_on_disk = applied_on_disk
        self._applied_heard = 0
        self._notices = Wakeup()
        self._hearing = 0

    @property
    def leadership(self) -> Leadership:
        """The lease and announcements as last seen."""
        return self._leadership

    @property
    def holds_lease(self) -> bool:
        """Whether this node's writer holds the lease."""
        return self.node_id is not None and self._leadership.holder == self.node_id

    @property
    def leads(self) -> bool:
        """Whether this node's writer holds the lease and takes writes: it has applied the
        whole log, so this node's stores show everything committed before."""
        return self.holds_lease and self._leadership.serving

    def leadership_ticket(self) -> asyncio.Event:
        """The event the next change of leadership sets; take it before looking."""
        return self._changes.ticket()

    async def leadership_change(self, seen: Leadership, timeout: float | None = None) -> Leadership:
        """The leadership once it differs from `seen` (as it is, after `timeout` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._leadership == seen:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            await wait_any(self._changes.ticket(), timeout=left)
        return self._leadership

    @property
    def applied(self) -> int:
        """The log sequence this node has applied: read from its system store when the view
        has one (an announcement is never ahead of it), else the last one announced."""
        if self._applied_on_disk is not None:
            return self._applied_on_disk()
        return self._applied_heard

    @property
    def hearing(self) -> int:
        """How many users want applied notices now (none: the view does not listen)."""
        return self._hearing

    def applied_ticket(self) -> asyncio.Event:
        """The event the next applied notice sets; take it before looking for new entries.
        Notices come only while someone is `hearing`."""
        return self._notices.ticket()

    async def start_hearing(self) -> None:
        """Want this node's applied notices (counted; each call needs a `stop_hearing`)."""
        self._hearing += 1
        if self._hearing == 1:
            await self._listen_applied(True)
            self._notices.notify()  # entries applied while nobody listened

    async def stop_hearing(self) -> None:
        """No longer want applied notices; the last one to stop ends the listening."""
        self._hearing -= 1
        if self._hearing == 0:
            await self._listen_applied(False)

    @contextlib.asynccontextmanager
    async def hearing_applied(self) -> AsyncIterator[None]:
        """Hear applied notices inside the `async with`."""
        await self.start_hearing()
        try:
            yield
        finally:
            await self.stop_hearing()

    async def wait_applied(self, sequence: int, timeout_s: float) -> None:
        """Return once this node has applied `sequence`; `Timeout` after `timeout_s`."""
        current = self.applied
        if current >= sequence:
            return
        async with self.hearing_applied():
            deadline = time.monotonic() + timeout_s
            look_at = time.monotonic() + APPLIED_POLL_S
            looked_past = 0
            while True:
                ticket = self._notices.ticket()
                now = time.monotonic()
                # Notices come with every entry applied; the store is read only when one
                # reaches `sequence`, or once a poll interval (a notice may be lost).
                heard = self._applied_heard
                if now >= look_at or (heard >= sequence and heard > looked_past):
                    looked_past = heard
                    look_at = now + APPLIED_POLL_S
                    current = self.applied
                    if current >= sequence:
                        return
                left = deadline - now
                if left <= 0:
                    raise Timeout(
                        f"this node has applied the log to {current}, not yet to {sequence}",
                        sequence=sequence,
                        applied_sequence=current,
                    )
                await wait_any(ticket, timeout=min(left, look_at - now))

    @abc.abstractmethod
    async def log_state(self, timeout: float = 5.0) -> LogState | None:
        """The replicated log as its JetStream leader reports it (every entry a writer
        acknowledged is at or below its last sequence), None before the first writer made
        it; `Unavailable` if JetStream cannot say."""

    @abc.abstractmethod
    async def node_statuses(self, window: float = STATUS_WINDOW_S) -> list[NodeStatus]:
        """Every writer node that answers within `window` seconds."""

    @abc.abstractmethod
    async def members(self) -> list[Member]:
        """Every node the cluster has registered (`shared/membership.py`), by node id; none
        while the registry cannot be read."""

    @abc.abstractmethod
    async def _listen_applied(self, on: bool) -> None:
        """Start or stop receiving this node's applied notices."""

    def _set(self, leadership: Leadership) -> None:
        if leadership != self._leadership:
            self._leadership = leadership
            self._changes.notify()

    def _lease_seen(self, value: bytes | None) -> None:
        if value != self._leadership.lease:
            self._set(replace(self._leadership, lease=value, serving=False))

    def _serving_announced(self, node: str) -> None:
        now = self._leadership
        serving = now.serving or (node == now.holder)
        self._set(replace(now, serving=serving, announcements=now.announcements + 1))

    def _applied_announced(self, sequence: int) -> None:
        self._applied_heard = max(self._applied_heard, sequence)
        self._notices.notify()


async def follow_leader(
    view: ClusterView,
    stop: asyncio.Event,
    *,
    start: Callable[[], Awaitable[None]],
    end: Callable[[], Awaitable[None]],
    serving: bool,
) -> None:
    """Until `stop`: `start` once this node's writer holds the lease (with `serving`, once it
    also takes writes, so the node has applied the whole log), `end` once the lease is
    elsewhere, and `end` on the way out."""
    active = False
    try:
        while not stop.is_set():
            ticket = view.leadership_ticket()
            if not active and (view.leads if serving else view.holds_lease):
                await start()
                active = True
            elif active and not view.holds_lease:
                await end()
                active = False
            await wait_any(ticket, stop)
    finally:
        if active:
            await end()


_status = msgspec.msgpack.Decoder(NodeStatus)


class NatsClusterView(ClusterView):
    """The cluster as NATS shows it; `node_id` None for a service that belongs to no node
    (the gateway)."""

    def __init__(
        self,
        nc: NatsClient,
        node_id: str | None,
        *,
        applied_on_disk: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(node_id, applied_on_disk)
        self._nc = nc
        self._subs: list[Subscription] = []
        self._notice_sub: Subscription | None = None
        self._telling: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._revision = 0

    @property
    def lease_revision(self) -> int:
        """The last revision of the lease key seen."""
        return self._revision

    async def start(self) -> None:
        """Hear leaders announce, and watch the lease, until `close`."""
        self._subs.append(await self._nc.subscribe(WRITER_SERVING, cb=self._on_serving))
        self._tasks = [
            asyncio.create_task(self._watch_lease(), name="lease watch"),
            asyncio.create_task(self._confirm_serving(), name="serving probe"),
        ]

    async def close(self) -> None:
        """Stop watching and listening."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*tasks)
        subs, self._subs = self._subs, []
        notices, self._notice_sub = self._notice_sub, None
        telling, self._telling = self._telling, None
        await cancel_and_wait(telling)
        await unsubscribe(*subs, notices)

    async def __aenter__(self) -> NatsClusterView:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def log_state(self, timeout: float = 5.0) -> LogState | None:
        """The replicated log as its JetStream leader reports it (every entry a writer
        acknowledged is at or below its last sequence), None before the first writer made
        it; `Unavailable` if JetStream cannot say."""
        try:
            info = await self._nc.jetstream(timeout=timeout).stream_info(LOG_STREAM)
        except nats.js.errors.NotFoundError:
            return None
        except (nats.errors.Error, TimeoutError) as e:
            raise Unavailable(f"cannot read the replicated log's state ({e!r}); retry") from e
        cluster = info.cluster
        replicas = [
            ReplicaState(
                name=peer.name or "?",
                current=bool(peer.current),
                offline=bool(peer.offline),
                lag=peer.lag or 0,
            )
            for peer in (cluster.replicas or [] if cluster else [])
        ]
        return LogState(
            first_sequence=info.state.first_seq,
            last_sequence=info.state.last_seq,
            leader=cluster.leader if cluster else None,
            replicas=replicas,
        )

    async def node_statuses(self, window: float = STATUS_WINDOW_S) -> list[NodeStatus]:
        """Every writer node that answers within `window` seconds."""
        replies = await gather_replies(self._nc, NODE_STATUS, b"", window)
        return [_status.decode(reply) for reply in replies]

    async def members(self) -> list[Member]:
        """Every node the cluster has registered (`shared/membership.py`), by node id; none
        while the registry cannot be read."""
        try:
            kv = await self._nc.jetstream(timeout=1.0).key_value(MEMBERS_BUCKET)
            return await all_members(kv)
        except (nats.errors.Error, TimeoutError):
            return []

    async def _listen_applied(self, on: bool) -> None:
        if self.node_id is None:
            return
        if on and self._notice_sub is None:
            subject = node_applied_subject(self.node_id)
            self._notice_sub = await self._nc.subscribe(subject, cb=self._on_applied)
            # The writer publishes notices only while told someone hears (per entry, they
            # cost every node a message to no one otherwise). Its reply carries what it
            # applied before it heard, so no entry falls between the two.
            await self._tell_hearing(self.node_id)
            self._telling = asyncio.create_task(self._keep_telling(self.node_id))
        elif not on and self._notice_sub is not None:
            sub, self._notice_sub = self._notice_sub, None
            telling, self._telling = self._telling, None
            await cancel_and_wait(telling)
            await unsubscribe(sub)

    async def _tell_hearing(self, node_id: str) -> None:
        try:
            reply = await self._nc.request(
                node_hearing_subject(node_id), b"", timeout=HEARING_RENEW_S
            )
            self._applied_announced(int(reply.data))
        except (nats.errors.Error, TimeoutError, ValueError):
            pass  # no writer now: the store polls cover it, and the next renewal asks again

    async def _keep_telling(self, node_id: str) -> None:
        while True:
            await asyncio.sleep(HEARING_RENEW_S)
            await self._tell_hearing(node_id)

    async def _on_applied(self, msg: Msg) -> None:
        try:
            sequence = int(msg.data)
        except ValueError:
            return
        self._applied_announced(sequence)

    async def _on_serving(self, msg: Msg) -> None:
        self._serving_announced(msg.data.decode(errors="replace"))

    async def _watch_lease(self) -> None:
        """Follow the lease key; a watch that falls silent longer than the lease's TTL is
        checked against the key itself (an expiry leaves no trace in a watch, and a watch
        may not survive a reconnect), and watched again if it missed anything."""
        retry = WATCH_RETRY_S[0]
        while True:
            try:
                kv = await self._nc.jetstream(timeout=2.0).key_value(LEASE_BUCKET)
                ttl = (await kv.status()).ttl or 1.0
                await self._follow(kv, ttl)
                retry = WATCH_RETRY_S[0]
            except (nats.errors.Error, TimeoutError) as e:
                log.debug("lease watch interrupted (%s); watching again", e)
                self._lease_seen(None)  # not known: nobody is taken to lead meanwhile
                await asyncio.sleep(retry)
                retry = min(retry * 2, WATCH_RETRY_S[1])

    async def _follow(self, kv: KeyValue, ttl: float) -> None:
        """Apply the watch's updates until it proves stale."""
        watcher = await kv.watch(LEASE_KEY)
        self._revision = 0  # a bucket made again starts its revisions over
        heard = False
        try:
            silence = ttl
            while True:
                try:
                    entry = await watcher.updates(timeout=silence)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    if not await self._still_current(kv):
                        return
                    # A lease past its TTL is about to expire (the server's timer): look soon.
                    silence = RECHECK_S if self._leadership.lease is not None else ttl
                    continue
                if entry is None:  # the end of what the key held when the watch began
                    if not heard:
                        self._lease_seen(None)
                    continue
                heard = True
                silence = ttl
                self._revision = entry.revision or self._revision
                deleted = entry.operation in (KV_DEL, KV_PURGE)
                self._lease_seen(None if deleted else entry.value)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def _still_current(self, kv: KeyValue) -> bool:
        """Read the key; False if the watch missed a change of it."""
        try:
            entry = await kv.get(LEASE_KEY)
        except nats.js.errors.KeyNotFoundError:
            self._lease_seen(None)
            return True
        self._lease_seen(entry.value)
        revision = entry.revision or 0
        if revision > self._revision:
            log.info("the lease watch missed revision %d; watching again", revision)
            self._revision = revision
            return False
        return True

    async def _confirm_serving(self) -> None:
        """Ask this node's writer whether it serves while it holds the lease and has not been
        heard announcing it: the announcement may have come before this view listened."""
        while True:
            seen = self._leadership
            ticket = self.leadership_ticket()
            if not self.holds_lease or seen.serving:
                await ticket.wait()
                continue
            if await self._writer_serves() and self._leadership.lease == seen.lease:
                self._set(replace(self._leadership, serving=True))
                continue
            await wait_any(ticket, timeout=PROBE_EVERY_S)

    async def _writer_serves(self) -> bool:
        node = self.node_id

        def ours(reply: bytes) -> bool:
            return _status.decode(reply).node_id == node

        try:
            replies = await gather_replies(self._nc, NODE_STATUS, b"", STATUS_WINDOW_S, ours)
            statuses = [_status.decode(reply) for reply in replies]
        except (nats.errors.Error, msgspec.DecodeError):
            return False
        return any(s.node_id == node and s.role == "leader" for s in statuses)


class MemoryClusterView(ClusterView):
    """The in-memory twin: the test says who holds the lease, who serves, and how far this
    node and the log are."""

    def __init__(
        self,
        node_id: str | None = "node1",
        *,
        log_end: int | None = 0,
        applied_on_disk: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(node_id, applied_on_disk)
        self.log_end = log_end
        self.statuses: list[NodeStatus] = []
        self.registered: list[Member] = []

    def set_lease(self, holder: str | None, run: str = "run1") -> None:
        """`holder`'s writer (its run `run`) took the lease; None: it was released or expired."""
        self._lease_seen(None if holder is None else lease_value(holder, run))

    def announce(self, node: str) -> None:
        """`node`'s writer announced that it takes writes."""
        self._serving_announced(node)

    def lead(self, node: str | None = None, run: str = "run1") -> None:
        """`node` (this one by default) takes the lease and serves."""
        node = node or self.node_id
        if node is None:
            raise ValueError("a view of no node needs the leader named")
        self.set_lease(node, run)
        self.announce(node)

    def applied_to(self, sequence: int) -> None:
        """This node's writer applied the log up to `sequence` and announced it."""
        self._applied_announced(sequence)

    async def _listen_applied(self, on: bool) -> None:
        pass  # notices come whenever the test applies

    async def log_state(self, timeout: float = 5.0) -> LogState | None:
        """The log as the test set it (`log_end`; None: there is no log yet)."""
        if self.log_end is None:
            return None
        return LogState(
            first_sequence=1 if self.log_end else 0,
            last_sequence=self.log_end,
            leader=None,
            replicas=[],
        )

    async def node_statuses(self, window: float = STATUS_WINDOW_S) -> list[NodeStatus]:
        """The statuses the test set."""
        return list(self.statuses)

    async def members(self) -> list[Member]:
        """The members the test registered."""
        return list(self.registered)
