"""`Client`: every public esdb operation as an async method."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from typing import Any, Literal

import msgspec

from esdb.client.connection import DEFAULT_URL, Connection, Requests, live
from esdb.client.connection_string import ConnectionSettings, parse_connection_string
from esdb.client.dcb import DcbOperations, DcbQuery
from esdb.client.events import (
    AppendSpec,
    CompactReply,
    ExpectedVersion,
    NewEvent,
    ReadAllCompactPage,
    ReadAllPage,
    ReadStreamPage,
    RecordedEvent,
)
from esdb.client.kurrent_names import KurrentNames
from esdb.client.live import DEFAULT_BUFFER_SIZE
from esdb.client.opening import ClosedOnExit, Opening
from esdb.client.persistent import PersistentOperations
from esdb.client.projections import ProjectionOperations
from esdb.client.requests import AppendBody, append_multi_body, event_bodies, ids_complete
from esdb.client.restore import RestoreOperations
from esdb.client.retry import RetryPolicy
from esdb.client.snapshots import SnapshotOperations
from esdb.client.stores import StoreOperations
from esdb.client.subscription import (
    DEFAULT_PAGE_SIZE,
    StartPosition,
    Subscribing,
    Subscription,
)
from esdb.contracts.api import (
    AppendMultiResult,
    AppendResult,
    ClusterStatus,
    DeleteStreamRequest,
    Health,
    ListStreamsRequest,
    ListStreamsResult,
    NodeRemovedResult,
    ReadAllRequest,
    ReadFilter,
    ReadStreamRequest,
    RemoveNodeRequest,
    ReplicasRequest,
    ReplicasSet,
    SetStreamMetadataRequest,
    StepDownRequest,
    SteppedDown,
    StreamInfoRequest,
    StreamInfoResult,
    StreamSummary,
    StreamVersionResult,
)
from esdb.contracts.selectors import select
from esdb.contracts.subjects import SYSTEM_STORE, Op, api_subject

Direction = Literal["forward", "backward"]
From = int | Literal["start", "end"]

_append_result = msgspec.msgpack.Decoder(AppendResult)
_append_multi_result = msgspec.msgpack.Decoder(AppendMultiResult)
_stream_page = msgspec.msgpack.Decoder(ReadStreamPage)
_all_page = msgspec.msgpack.Decoder(ReadAllPage)
_compact_reply = msgspec.msgpack.Decoder(CompactReply)
_streams_page = msgspec.msgpack.Decoder(ListStreamsResult)
_stream_info = msgspec.msgpack.Decoder(StreamInfoResult)
_cluster_status = msgspec.msgpack.Decoder(ClusterStatus)
_health = msgspec.msgpack.Decoder(Health)
_stepped_down = msgspec.msgpack.Decoder(SteppedDown)
_replicas_set = msgspec.msgpack.Decoder(ReplicasSet)
_node_removed = msgspec.msgpack.Decoder(NodeRemovedResult)
_stream_version = msgspec.msgpack.Decoder(StreamVersionResult)
_EMPTY: dict[str, Any] = {}
DEFAULT_STORE = "default"
DEFAULT_TIMEOUT_S = 5.0


class Client(
    KurrentNames,
    SnapshotOperations,
    ProjectionOperations,
    PersistentOperations,
    StoreOperations,
    DcbOperations,
    RestoreOperations,
    ClosedOnExit,
):
    """An esdb client bound to one store; create it with `await Client.connect(...)`."""

    def __init__(self, connection: Requests, store: str) -> None:
        self._connection = connection
        self.store = store
        self._subscriptions: set[Subscription] = set()
        self._subjects = {
            op: api_subject(store, op)
            for op in (
                Op.APPEND,
                Op.APPEND_MULTI,
                Op.READ_STREAM,
                Op.READ_ALL,
                Op.LIST_STREAMS,
                Op.STREAM_INFO,
            )
        }

    @classmethod
    def connect(
        cls,
        url: str = DEFAULT_URL,
        *,
        store: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        retry_deadline: float | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> Connecting:
        """Connect to a stack; await it, or use it as `async with Client.connect(...) as c`.

        `url` is a connection string, `esdb://host:4222[,host2:4223]?store=NAME&tls=true&
        timeout=5` (see `connection_string`), or NATS URLs (comma-separated). The client
        talks to any of the servers and moves to another when one goes away. Keyword
        arguments win over the string: `store` (else "default"), `timeout` (seconds per
        request, else 5), `retry` (how `unavailable` and `timeout` are retried, else
        `RetryPolicy()`; `max_retries` and `retry_deadline` change just those), `tls` (an
        SSL context, e.g. with a client certificate). A bad string raises
        `InvalidConnectionString` (a `ValueError`) at once."""
        settings = parse_connection_string(url)
        policy = retry
        if policy is None:
            policy = RetryPolicy()
            policy = _with_retry_options(policy, settings.max_retries, settings.retry_deadline)
        policy = _with_retry_options(policy, max_retries, retry_deadline)
        if tls is None and settings.tls_ca_file is not None:
            tls = ssl.create_default_context(cafile=settings.tls_ca_file)
        return Connecting(
            settings,
            store=store or settings.store or DEFAULT_STORE,
            timeout=timeout or settings.timeout or DEFAULT_TIMEOUT_S,
            retry=policy,
            tls=tls,
        )

    @property
    def url(self) -> str:
        """The connection string or NATS URL this client connected with (no password)."""
        return self._connection.url

    @property
    def retry(self) -> RetryPolicy:
        """How this client retries requests that fail with `unavailable` or `timeout`."""
        return self._connection.retry

    async def close(self) -> None:
        """End open subscriptions, finish requests in flight and close the connection."""
        for subscription in list(self._subscriptions):
            await subscription.close()
        await self._connection.close()

    async def append(
        self,
        stream: str,
        events: Iterable[NewEvent],
        *,
        expected_version: ExpectedVersion = "any",
    ) -> AppendResult:
        """Append events to one stream atomically; raises `WrongExpectedVersionError` (its
        `actual_version` is the stream's version) when the stream is elsewhere. Events
        without an `event_id` get a fresh one (when retries are on), so a retry cannot
        store them twice."""
        bodies = event_bodies(events, stamp_ids=self._connection.retry.enabled)
        body = AppendBody(
            stream=stream,
            events=bodies,
            expected_version=expected_version,
            timeout_ms=self._connection.server_timeout_ms,
        )
        return await self._connection.request(
            self._subjects[Op.APPEND],
            body,
            _append_result,
            write=True,
            idempotent=ids_complete(bodies),
        )

    async def append_multi(self, appends: Iterable[AppendSpec]) -> list[AppendResult]:
        """Append to several streams in one transaction: all land or none do."""
        body = append_multi_body(
            appends,
            self._connection.server_timeout_ms,
            stamp_ids=self._connection.retry.enabled,
        )
        result = await self._connection.request(
            self._subjects[Op.APPEND_MULTI],
            body,
            _append_multi_result,
            write=True,
            idempotent=all(ids_complete(spec.events) for spec in body.appends),
        )
        return result.results

    async def read_stream(
        self,
        stream: str,
        *,
        from_: From = "start",
        direction: Direction = "forward",
        limit: int = 100,
        min_position: int | None = None,
        resolve_links: bool = False,
    ) -> ReadStreamPage:
        """One page of a stream from version `from_` (raises `StreamNotFound` for a stream
        without events); `min_position` waits until the serving node has applied that
        position, which gives read-your-writes. With `resolve_links`, each link event
        (`linkTo`) comes as the event it points to, at the link's position."""
        request = ReadStreamRequest(
            stream=stream,
            from_=from_,
            direction=direction,
            limit=limit,
            min_position=min_position,
            timeout_ms=self._connection.server_timeout_ms,
            resolve_links=resolve_links,
        )
        return await self._connection.request(
            self._subjects[Op.READ_STREAM], request, _stream_page, idempotent=True
        )

    async def iter_stream(
        self,
        stream: str,
        *,
        from_: From = "start",
        direction: Direction = "forward",
        page_size: int = 100,
        min_position: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        """Every event of a stream from `from_` on, fetched a page at a time."""
        start: From | None = from_
        while start is not None:
            page = await self.read_stream(
                stream,
                from_=start,
                direction=direction,
                limit=page_size,
                min_position=min_position,
            )
            for event in page.events:
                yield event
            start = page.next

    async def read_all(
        self,
        *,
        from_position: From = "start",
        direction: Direction = "forward",
        limit: int = 100,
        filter: ReadFilter | None = None,
        min_position: int | None = None,
        resolve_links: bool = False,
    ) -> ReadAllPage:
        """One page of the store's global log (`$all`), filtered on the server; with
        `resolve_links`, links come as the events they point to (`read_stream`)."""
        request = self._read_all_request(
            from_position, direction, limit, filter, min_position, resolve_links
        )
        return await self._connection.request(
            self._subjects[Op.READ_ALL], request, _all_page, idempotent=True
        )

    async def read_all_compact(
        self,
        *,
        from_position: From = "start",
        direction: Direction = "forward",
        limit: int = 100,
        filter: ReadFilter | None = None,
        min_position: int | None = None,
    ) -> ReadAllCompactPage:
        """The page `read_all` reads, as `CompactEvent`s: event ids as 16 bytes, `created_us`
        as microseconds. Both ends skip building an object per field, which roughly halves
        the reader's CPU per event; for reading much of the log."""
        request = self._read_all_request(from_position, direction, limit, filter, min_position)
        request.compact = True
        reply = await self._connection.request(
            self._subjects[Op.READ_ALL], request, _compact_reply, idempotent=True
        )
        return reply.page()

    def _read_all_request(
        self,
        from_position: From,
        direction: Direction,
        limit: int,
        filter: ReadFilter | None,
        min_position: int | None,
        resolve_links: bool = False,
    ) -> ReadAllRequest:
        return ReadAllRequest(
            from_position=from_position,
            direction=direction,
            limit=limit,
            filter=filter,
            min_position=min_position,
            timeout_ms=self._connection.server_timeout_ms,
            resolve_links=resolve_links,
        )

    async def iter_all(
        self,
        *,
        from_position: From = "start",
        direction: Direction = "forward",
        page_size: int = 100,
        filter: ReadFilter | None = None,
        min_position: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        """Every matching event of `$all` from `from_position` to the end of the log as it
        is now (or to the start, backward), fetched a page at a time."""
        start: From | None = from_position
        while start is not None:
            page = await self.read_all(
                from_position=start,
                direction=direction,
                limit=page_size,
                filter=filter,
                min_position=min_position,
            )
            for event in page.events:
                yield event
            start = page.next_position

    def subscribe(
        self,
        *,
        stream: str | None = None,
        category: str | None = None,
        event_type: str | None = None,
        pattern: str | None = None,
        all: bool = False,
        query: DcbQuery | None = None,
        from_position: StartPosition | None = None,
        from_version: int | None = None,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        page_size: int = DEFAULT_PAGE_SIZE,
        resolve_links: bool = False,
    ) -> Subscribing:
        """Events as the leader commits them, in position order and without duplicates: use
        `async with client.subscribe(...) as sub: async for event in sub`, or
        `sub = await client.subscribe(...)` and `await sub.close()` later. Once it is open,
        every selected event appended afterwards is delivered.

        Select with exactly one of: `stream`, `category` (the stream id before its first
        `-`), `event_type`, `all=True`, `query` (a `DcbQuery`: the DCB events that match it;
        live, each event of the store's `$dcb` stream is checked here; history comes from
        `dcb_read`, through the store's tag index), or `pattern`, a NATS
        wildcard pattern over `<category>.<stream>.<event_type>` (the subject after
        `esdb.events.<store>.`; `*` is one token, a final `>` the rest; literal tokens escaped
        as `contracts.topics.escape_token` does, e.g. `order.*.Order%20Placed`).

        Without `from_position`/`from_version` the subscription is transient: live events
        only, those above the store's head when it opened. With them it catches up: history
        from the store first (`from_position` a position, inclusive, or `"start"`;
        `from_version` a version of the `stream`), then one `CaughtUp`, then live events, with
        no gap and no duplicate; `"end"` yields `CaughtUp` at the current head, then what is
        appended from then on.

        Lost live messages (a NATS reconnect, more than `buffer_size` waiting) are re-read
        from the store by catch-up subscriptions, and by `all=True` ones (a gap in positions
        shows them); a transient subscription with another selector raises
        `SubscriptionDropped` instead, as such gaps cannot be seen in its positions.

        With `resolve_links`, each link event (a projection's `linkTo`) is delivered as the
        event it points to, at the link's position; links to unreadable events are skipped."""
        selector = select(
            self.store,
            stream=stream,
            category=category,
            event_type=event_type,
            pattern=pattern,
            all=all,
            query=None if query is None else query.checked_items(),
        )
        return Subscribing(
            live(self._connection),
            self,
            selector,
            from_position=from_position,
            from_version=from_version,
            buffer_size=buffer_size,
            page_size=page_size,
            opened=self._subscriptions,
            resolve_links=resolve_links,
        )

    async def list_streams(
        self, *, after: str | None = None, limit: int = 100
    ) -> ListStreamsResult:
        """One page of streams (in name order) after `after`, with their versions, states and
        metadata."""
        request = ListStreamsRequest(
            after=after, limit=limit, timeout_ms=self._connection.server_timeout_ms
        )
        return await self._connection.request(
            self._subjects[Op.LIST_STREAMS], request, _streams_page, idempotent=True
        )

    async def iter_streams(
        self, *, after: str | None = None, page_size: int = 100
    ) -> AsyncIterator[StreamSummary]:
        """Every stream after `after`, in name order, fetched a page at a time."""
        start = after
        while True:
            page = await self.list_streams(after=start, limit=page_size)
            for summary in page.streams:
                yield summary
            if page.next is None:
                return
            start = page.next

    async def stream_info(self, stream: str) -> StreamInfoResult:
        """A stream's version, metadata and state; raises `StreamNotFound` if it has none."""
        return await self._connection.request(
            self._subjects[Op.STREAM_INFO],
            StreamInfoRequest(stream=stream, timeout_ms=self._connection.server_timeout_ms),
            _stream_info,
            idempotent=True,
        )

    async def set_stream_metadata(
        self,
        stream: str,
        metadata: dict[str, Any],
        *,
        expected_version: ExpectedVersion = "any",
    ) -> int:
        """Replace a stream's metadata (`max_count`, `max_age` in seconds, `truncate_before`,
        and any custom keys) if it is at `expected_version`; returns its version."""
        request = SetStreamMetadataRequest(
            stream=stream,
            metadata=metadata,
            expected_version=expected_version,
            timeout_ms=self._connection.server_timeout_ms,
        )
        return await self._lifecycle(Op.SET_STREAM_METADATA, request)

    async def delete_stream(self, stream: str, *, expected_version: ExpectedVersion = "any") -> int:
        """Soft-delete a stream: its events are no longer read, and it can be written again
        (versions continue); returns the version it had."""
        return await self._lifecycle(Op.DELETE_STREAM, self._delete_body(stream, expected_version))

    async def tombstone_stream(
        self, stream: str, *, expected_version: ExpectedVersion = "any"
    ) -> int:
        """Delete a stream for good: reads and appends raise `StreamDeleted` from now on."""
        return await self._lifecycle(
            Op.TOMBSTONE_STREAM, self._delete_body(stream, expected_version)
        )

    def _delete_body(self, stream: str, expected_version: ExpectedVersion) -> DeleteStreamRequest:
        return DeleteStreamRequest(
            stream=stream,
            expected_version=expected_version,
            timeout_ms=self._connection.server_timeout_ms,
        )

    async def _lifecycle(self, operation: str, request: msgspec.Struct) -> int:
        result = await self._connection.request(
            api_subject(self.store, operation), request, _stream_version, write=True
        )
        return result.version

    async def cluster_status(self) -> ClusterStatus:
        """The writer leader and every node's applied sequence and lag."""
        return await self._connection.request(
            api_subject(SYSTEM_STORE, Op.CLUSTER_STATUS), _EMPTY, _cluster_status, idempotent=True
        )

    async def health(self) -> Health:
        """`ok` when a leader accepts writes and a reader answers, else `unavailable`."""
        return await self._connection.request(
            api_subject(SYSTEM_STORE, Op.HEALTH), _EMPTY, _health, idempotent=True
        )

    async def step_down(self) -> SteppedDown:
        """Have the writer leader hand leadership to a caught-up follower."""
        request = StepDownRequest(timeout_ms=self._connection.server_timeout_ms)
        return await self._connection.request(
            api_subject(SYSTEM_STORE, Op.CLUSTER_STEP_DOWN), request, _stepped_down
        )

    async def set_replicas(self, replicas: int) -> ReplicasSet:
        """Set the replica count of the log, the lease, the members and the images."""
        request = ReplicasRequest(replicas=replicas, timeout_ms=self._connection.server_timeout_ms)
        return await self._connection.request(
            api_subject(SYSTEM_STORE, Op.CLUSTER_REPLICAS), request, _replicas_set, idempotent=True
        )

    async def remove_node(self, node: str) -> NodeRemovedResult:
        """Take a stopped node out of the cluster for good."""
        request = RemoveNodeRequest(node=node, timeout_ms=self._connection.server_timeout_ms)
        return await self._connection.request(
            api_subject(SYSTEM_STORE, Op.CLUSTER_REMOVE), request, _node_removed
        )


class Connecting(Opening[Client]):
    """A connection being opened: await it for a `Client`, or use it with `async with`."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        store: str,
        timeout: float,
        retry: RetryPolicy,
        tls: ssl.SSLContext | None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._timeout = timeout
        self._retry = retry
        self._tls = tls

    async def _open(self) -> Client:
        connection = await Connection.open(
            self._settings.display,
            servers=self._settings.servers,
            timeout=self._timeout,
            retry=self._retry,
            tls=self._tls,
        )
        return Client(connection, self._store)


def _with_retry_options(
    policy: RetryPolicy, max_retries: int | None, deadline: float | None
) -> RetryPolicy:
    if max_retries is not None:
        policy = replace(policy, max_retries=max_retries)
    if deadline is not None:
        policy = replace(policy, deadline=deadline)
    return policy
