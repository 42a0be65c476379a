"""Public request and result shapes (contract). JSON and msgpack carry the same fields."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

JSON_CONTENT_TYPE = "application/json"
MSGPACK_CONTENT_TYPE = "application/msgpack"

ExpectedVersionIn = int | str
"""`"any"`, `"no_stream"`, `"stream_exists"` or an exact version (>= -1)."""


class EventIn(msgspec.Struct, kw_only=True):
    """One event of an append request."""

    type: str
    data: msgspec.Raw = msgspec.Raw()
    metadata: msgspec.Raw = msgspec.Raw()
    event_id: str | None = None
    content_type: str = JSON_CONTENT_TYPE


class AppendRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.append`."""

    stream: str
    events: list[EventIn]
    expected_version: ExpectedVersionIn = "any"
    timeout_ms: int | None = None


class AppendSpec(msgspec.Struct, kw_only=True):
    """One stream's part of an `append_multi`."""

    stream: str
    events: list[EventIn]
    expected_version: ExpectedVersionIn = "any"


class AppendMultiRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.append_multi`: all appends land or none do."""

    appends: list[AppendSpec]
    timeout_ms: int | None = None


class DcbEventIn(EventIn, kw_only=True):
    """One event of a `dcb_append`: an event with `tags`."""

    tags: list[str] = []


class DcbQueryItemIn(msgspec.Struct, kw_only=True):
    """One item of a DCB query: events of one of `types` (any type when empty) that carry
    all of `tags`."""

    types: list[str] = []
    tags: list[str] = []


class DcbQueryIn(msgspec.Struct, kw_only=True):
    """A DCB query: events matching any of its `items`; no items match every DCB event."""

    items: list[DcbQueryItemIn] = []


class DcbConditionIn(msgspec.Struct, kw_only=True):
    """A `dcb_append` condition: fail if an event after `after` (null: any) matches."""

    fail_if_events_match: DcbQueryIn = msgspec.field(default_factory=DcbQueryIn)
    after: int | None = None


class DcbAppendRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.dcb_append`: tagged events into the store's `$dcb` stream, all or
    none, unless `condition` fails."""

    events: list[DcbEventIn]
    condition: DcbConditionIn | None = None
    timeout_ms: int | None = None


class DcbAppendResult(msgspec.Struct, kw_only=True):
    """Where a `dcb_append` landed: the position of its last event."""

    position: int


class DcbReadRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.dcb_read`: DCB events matching `query` (null: all) beyond `after`
    (null: from the start forward, from the end backward)."""

    query: DcbQueryIn | None = None
    after: int | None = None
    limit: int = 100
    direction: str = "forward"
    min_position: int | None = None
    timeout_ms: int | None = None


class DcbEventOut(msgspec.Struct, kw_only=True):
    """A DCB event as read back; `data`/`metadata` as in `EventOut`."""

    position: int
    type: str
    data: msgspec.Raw | bytes | None
    metadata: msgspec.Raw | bytes | None
    tags: list[str]
    event_id: str
    content_type: str
    created: datetime
    version: int
    """The event's version in the store's `$dcb` stream (as `read_all` shows it)."""


class DcbReadResult(msgspec.Struct, kw_only=True):
    """A page of DCB events and `head`, the store's last position when it was read (null: the
    store is empty). `more`: the page holds `limit` events or was cut short to fit in one
    reply, so more may match after its last event (read on from that position)."""

    events: list[DcbEventOut]
    head: int | None
    more: bool = False


class ReadFilter(msgspec.Struct, kw_only=True):
    """Server-side filters of `read_all`; all given conditions must hold. The regexes are RE2
    syntax, matched anywhere in the stream id or event type."""

    event_types: list[str] | None = None
    event_type_prefix: str | None = None
    stream_prefix: str | None = None
    category: str | None = None
    event_type_regex: str | None = None
    stream_regex: str | None = None


class ReadStreamRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.read_stream`."""

    stream: str
    from_: int | str = msgspec.field(name="from", default="start")
    direction: str = "forward"
    limit: int = 100
    min_position: int | None = None
    timeout_ms: int | None = None
    resolve_links: bool = False
    """Return the event each link (`$>`, written by `linkTo`) points to, at the link's
    position; a link to an event no longer readable is left out."""


class ReadAllRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.read_all`. With `compact`, the page's events come as `records`
    (`CompactEvent` arrays) and `events` is empty: about half the reader's work per event,
    for bulk readers."""

    from_position: int | str = "start"
    direction: str = "forward"
    limit: int = 100
    filter: ReadFilter | None = None
    min_position: int | None = None
    timeout_ms: int | None = None
    compact: bool = False
    resolve_links: bool = False
    """As `ReadStreamRequest.resolve_links`."""


class ListStreamsRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.list_streams`: streams in name order, paged by `after`."""

    after: str | None = None
    limit: int = 100
    timeout_ms: int | None = None


class StreamInfoRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.stream_info`."""

    stream: str
    timeout_ms: int | None = None


class SetStreamMetadataRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.set_stream_metadata`: replace a stream's metadata. Known keys:
    `max_count` (keep the last N events), `max_age` (seconds), `truncate_before` (a version);
    any other key is kept as it is."""

    stream: str
    metadata: dict[str, Any]
    expected_version: ExpectedVersionIn = "any"
    timeout_ms: int | None = None


class DeleteStreamRequest(msgspec.Struct, kw_only=True):
    """`delete_stream` (soft: the stream may be written again, versions continue) and
    `tombstone_stream` (permanent)."""

    stream: str
    expected_version: ExpectedVersionIn = "any"
    timeout_ms: int | None = None


class StreamVersionResult(msgspec.Struct, kw_only=True):
    """The stream's version after a metadata change or a delete."""

    version: int


class StoreConfig(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a store's creator says about it."""

    description: str = ""
    tags: list[str] = []


class StoreRequest(msgspec.Struct, kw_only=True):
    """`_sys.store_create` (with an optional `config`), `_sys.store_remove`,
    `_sys.store_status`, and `_sys.store_config` (which replaces the config when one is
    given, and returns it either way)."""

    store: str
    config: StoreConfig | None = None
    timeout_ms: int | None = None


class StoreListRequest(msgspec.Struct, kw_only=True):
    """`_sys.store_list`."""

    timeout_ms: int | None = None


class StoreInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A store: its config and, from `store_status`, what the answering node holds of it."""

    store: str
    config: StoreConfig
    last_position: int | None = None
    applied_sequence: int | None = None
    size_bytes: int | None = None


class StoreRemoved(msgspec.Struct, kw_only=True):
    """`_sys.store_remove` result."""

    store: str
    removed: bool = True


class StoreList(msgspec.Struct, kw_only=True):
    """`_sys.store_list` result."""

    stores: list[StoreInfo]


class ScavengeRequest(msgspec.Struct, kw_only=True):
    """`esdb.api.<store>.scavenge`: remove what no read can return any more, now."""

    timeout_ms: int | None = None


class ScavengeReport(msgspec.Struct, kw_only=True):
    """What a scavenge removed: events and their stored bytes (LMDB reuses the freed pages
    for new data; the file does not shrink)."""

    store: str
    streams: int
    events: int
    bytes: int


class AppendResult(msgspec.Struct, kw_only=True):
    """Where an append landed: versions in its stream, positions in the store."""

    first_version: int
    last_version: int
    first_position: int
    last_position: int


class AppendMultiResult(msgspec.Struct, kw_only=True):
    """One `AppendResult` per append of the request, in order."""

    results: list[AppendResult]


class EventOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A stored event as read back. `data`/`metadata` are JSON values for JSON content,
    base64 in JSON replies otherwise, raw bytes in msgpack replies."""

    event_id: str
    stream_id: str
    version: int
    position: int
    event_type: str
    data: msgspec.Raw | bytes | None
    metadata: msgspec.Raw | bytes | None
    content_type: str
    created: datetime
    tags: list[str] = []
    """DCB tags (omitted when there are none)."""


class ReadStreamResult(msgspec.Struct, kw_only=True):
    """A page of a stream; `next` is the version to read from next, null at the end."""

    events: list[EventOut]
    next: int | None
    last_version: int


class CompactEvent(msgspec.Struct, array_like=True, frozen=True):
    """A stored event as an array, in a `compact` `read_all` reply: `[event_id, stream_id,
    version, position, event_type, data, metadata, content_type, created_us, tags]`. `event_id` is
    the UUID's 16 bytes, `data`/`metadata` the stored bytes (base64 in JSON, whatever the
    content type), `created_us` microseconds since the Unix epoch (UTC)."""

    event_id: bytes
    stream_id: str
    version: int
    position: int
    event_type: str
    data: bytes
    metadata: bytes
    content_type: str
    created_us: int
    tags: tuple[str, ...] = ()
    """DCB tags (an empty array when there are none)."""


class ReadAllResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A page of `$all`; `next_position` continues the scan, null at the end. `records` only
    in a reply to a `compact` request (whose `events` is then empty)."""

    events: list[EventOut]
    next_position: int | None
    records: list[CompactEvent] | None = None


class StreamSummary(msgspec.Struct, kw_only=True):
    """A stream in `list_streams`: its version, state (`active`, `deleted`, `tombstoned`) and
    metadata, as `stream_info` gives them."""

    stream: str
    version: int
    state: str = "active"
    metadata: dict[str, object] = {}


class ListStreamsResult(msgspec.Struct, kw_only=True):
    """A page of stream names; `next` is the `after` of the next page, null at the end."""

    streams: list[StreamSummary]
    next: str | None


class StreamInfoResult(msgspec.Struct, kw_only=True):
    """A stream's version, metadata and state (`active`, `deleted`, `tombstoned`)."""

    stream: str
    version: int
    metadata: dict[str, object]
    state: str


class NodeStatus(msgspec.Struct, kw_only=True):
    """One writer node as seen in `cluster_status`: its progress, the running hash of the log
    it applied (at its latest checkpoints), and its view of the lease and of membership."""

    node_id: str
    role: str
    applied_sequence: int
    log_last_sequence: int
    lag: int
    stores: list[str]
    host: str = ""
    """Where the node's clients connect (`host:port`)."""
    log_hash: str = ""
    checkpoints: dict[int, str] = {}
    lease_holder: str | None = None
    members: dict[str, bool] = {}
    stalled: str | None = None
    """Why the node cannot apply the next log entry (a full disk), while it retries."""


class ReplicaState(msgspec.Struct, kw_only=True):
    """One JetStream replica of the log stream."""

    name: str
    current: bool
    offline: bool
    lag: int


class LogState(msgspec.Struct, kw_only=True):
    """The replicated log as JetStream reports it."""

    first_sequence: int
    last_sequence: int
    leader: str | None
    replicas: list[ReplicaState]


class MemberState(msgspec.Struct, kw_only=True):
    """One node the cluster has registered: where it is, whether it was removed for good
    (`removed`) or is a `member`, and whether it answered this status request."""

    node_id: str
    host: str
    state: str
    answered: bool


class ClusterStatus(msgspec.Struct, kw_only=True):
    """`esdb.api._sys.cluster_status`: the leader, every node that answered, the log's
    replicas, whether the nodes agree (leader, membership, log hash), and every registered
    member, answering or not."""

    leader: str | None
    nodes: list[NodeStatus]
    log: LogState | None = None
    consistent: bool = True
    problems: list[str] = []
    members: list[MemberState] = []


class StepDownRequest(msgspec.Struct, kw_only=True):
    """`_sys.cluster_step_down`: the writer leader hands leadership to a caught-up follower."""

    timeout_ms: int | None = None


class SteppedDown(msgspec.Struct, kw_only=True):
    """Who led before the step-down, and who leads now (null: nobody took over yet)."""

    previous: str | None
    leader: str | None


class ReplicasRequest(msgspec.Struct, kw_only=True):
    """`_sys.cluster_replicas`: set the replica count of the log, the lease, the members and
    the image store (1, 3 or 5; at most the number of servers)."""

    replicas: int
    timeout_ms: int | None = None


class ReplicasSet(msgspec.Struct, kw_only=True):
    """The replica count now, and the JetStream streams it was set on."""

    replicas: int
    streams: list[str]


class RemoveNodeRequest(msgspec.Struct, kw_only=True):
    """`_sys.cluster_remove`: take a stopped node out of the cluster for good."""

    node: str
    timeout_ms: int | None = None


class NodeRemovedResult(msgspec.Struct, kw_only=True):
    """The removed node, the streams whose replica on it moved to other servers, and whether
    its JetStream peer left the cluster's meta group."""

    node: str
    streams: list[str]
    server_removed: bool


class Health(msgspec.Struct, kw_only=True):
    """`esdb.api._sys.health`: `ok` when a leader accepts writes and a reader answers."""

    status: str
    leader: str | None
    readers: int
