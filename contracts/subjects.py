"""NATS subject names (contract) and the JetStream resources esdb owns."""

from __future__ import annotations

import functools

API_PREFIX = "esdb.api"
SYSTEM_STORE = "_sys"
INTERNAL_PREFIX = "esdb.internal"

WRITE_PREFIX = "esdb.write"
LEADER_PREFIX = "esdb.leader"
"""`esdb.leader.<store>.<write op>`: a write straight to the writer leader, which no gateway
copies (services/writer/DESIGN.md, "Writes skip the gateway"). For clients that hear
`WRITER_SERVING` and give up their own writes in flight when a new leader serves, as the
Python client does; `esdb.api.<store>.<write op>` is the same write with the gateways' copy."""
READ_PREFIX = "esdb.read"

GATEWAY_QUEUE = "esdb-gateway"
READER_QUEUE = "esdb-reader"

WRITER_COMMANDS = f"{INTERNAL_PREFIX}.writer.commands"
WRITER_OPS = f"{INTERNAL_PREFIX}.writer.ops"
WRITER_SERVING = "esdb.cluster.serving"
"""A new leader announces here that it takes writes (its node id). Public, subscribe-only:
a write still waiting when it comes went to an earlier leader or to none."""
EMITTER_CHECKPOINT = "$emitter"
NODE_STATUS = f"{INTERNAL_PREFIX}.node.status"
NODE_HEARTBEAT = f"{INTERNAL_PREFIX}.node.heartbeat"


def node_applied_subject(node_id: str) -> str:
    """Where a node's writer announces each applied log sequence, for node-local services."""
    return f"{INTERNAL_PREFIX}.node.{node_id}.applied"


def node_hearing_subject(node_id: str) -> str:
    """Where a node-local service that hears applied notices says so to its writer, which
    publishes them only while someone does; the reply is the sequence applied so far."""
    return f"{INTERNAL_PREFIX}.node.{node_id}.hearing"


LOG_STREAM = "ESDB_LOG"
LOG_SUBJECT = f"{INTERNAL_PREFIX}.log"
LEASE_BUCKET = "esdb_leader"
LEASE_KEY = "writer"


def lease_value(node_id: str, incarnation: str) -> bytes:
    """The lease key's value: the holder node and which run of its writer holds it."""
    return f"{node_id}:{incarnation}".encode()


def lease_holder(value: bytes | None) -> str | None:
    """The node named by a lease value."""
    return value.decode().split(":", 1)[0] if value else None


IMAGE_BUCKET = "esdb_images"
IMAGE_NAME = "latest"
MEMBERS_BUCKET = "esdb_members"
"""The cluster's members by node id: each node's host, and whether it was removed."""
CLUSTER_STREAMS = (LOG_STREAM, f"KV_{LEASE_BUCKET}", f"KV_{MEMBERS_BUCKET}", f"OBJ_{IMAGE_BUCKET}")
"""The JetStream streams that hold the cluster's state: the log, the lease, the members and
the images."""


def server_name(node_id: str) -> str:
    """The nats-server (and JetStream peer) name of node `node_id` in the servers `esdb up`
    starts."""
    return f"esdb-{node_id}"


def writer_step_down_subject(node_id: str) -> str:
    """Asks node `node_id`'s writer, if it leads, to hand leadership to a caught-up follower."""
    return f"{INTERNAL_PREFIX}.writer.{node_id}.step_down"


HANDOVER_WAIT_S = 5.0
"""A writer answers a step-down once another node holds the lease, or after this long."""
STEP_DOWN_TIMEOUT_S = HANDOVER_WAIT_S + 2.0
"""How long whoever asks for a step-down waits for the writer's answer."""


WRITER_HANDOVER = f"{INTERNAL_PREFIX}.writer.handover"
"""A leader stepping down announces here the log sequence it applied last: followers that
have applied it try for the lease at once."""


def api_subject(store: str, operation: str) -> str:
    """The public request subject of `operation` on `store`."""
    return f"{API_PREFIX}.{store}.{operation}"


def write_subject(store: str, operation: str) -> str:
    """Where the servers route `esdb.api.<store>.<operation>` of a write: the writer leader."""
    return f"{WRITE_PREFIX}.{store}.{operation}"


@functools.lru_cache(maxsize=1024)
def leader_subject(subject: str) -> str | None:
    """`esdb.leader.<store>.<op>` for a public write subject `esdb.api.<store>.<op>` (None
    for anything else): the same write, with no gateway keeping a copy."""
    prefix, _, rest = subject.partition(".")
    api, _, rest = rest.partition(".")
    store, _, operation = rest.partition(".")
    if f"{prefix}.{api}" != API_PREFIX or operation not in WRITE_OPERATIONS:
        return None
    return f"{LEADER_PREFIX}.{store}.{operation}"


def read_subject(store: str, operation: str) -> str:
    """The subject the servers map a public read to; the readers serve it (a queue group)."""
    return f"{READ_PREFIX}.{store}.{operation}"


def api_mappings() -> dict[str, str]:
    """nats-server subject mappings that send every public write straight to the writer
    leader and every public read straight to a reader, so neither passes through the gateway
    (services/writer/DESIGN.md, services/reader/DESIGN.md)."""
    writes = {
        api_subject("*", operation): write_subject("{{wildcard(1)}}", operation)
        for operation in sorted(WRITE_OPERATIONS)
    }
    reads = {
        api_subject("*", operation): read_subject("{{wildcard(1)}}", operation)
        for operation in sorted(READ_OPERATIONS)
    }
    return writes | reads


def public_subject(subject: str) -> str:
    """The public subject a client used, given the one the servers mapped it to."""
    for prefix in (WRITE_PREFIX, LEADER_PREFIX, READ_PREFIX):
        if subject.startswith(f"{prefix}."):
            return API_PREFIX + subject[len(prefix) :]
    return subject


def reader_subject(operation: str) -> str:
    """The internal subject the readers serve `operation` on."""
    return f"{INTERNAL_PREFIX}.reader.{operation}"


SUBSCRIPTIONS_SERVICE = "subscriptions"
SNAPSHOTS_SERVICE = "snapshots"
SCAVENGER_SERVICE = "scavenger"
PROJECTIONS_SERVICE = "projections"


def service_subject(service: str, store: str, operation: str) -> str:
    """Where the gateway forwards `operation` on `store` to a node-local service."""
    return f"{INTERNAL_PREFIX}.{service}.{store}.{operation}"


def service_queue(service: str) -> str:
    """The queue group of a node-local service's API subjects."""
    return f"esdb-{service}"


class Op:
    """Public operation names: the last token of `esdb.api.<store>.<operation>`."""

    APPEND = "append"
    APPEND_MULTI = "append_multi"
    READ_STREAM = "read_stream"
    READ_ALL = "read_all"
    LIST_STREAMS = "list_streams"
    STREAM_INFO = "stream_info"
    SET_STREAM_METADATA = "set_stream_metadata"
    DELETE_STREAM = "delete_stream"
    TOMBSTONE_STREAM = "tombstone_stream"
    HEALTH = "health"
    CLUSTER_STATUS = "cluster_status"
    CLUSTER_STEP_DOWN = "cluster_step_down"
    CLUSTER_REPLICAS = "cluster_replicas"
    CLUSTER_REMOVE = "cluster_remove"
    STORE_LIST = "store_list"
    STORE_CREATE = "store_create"
    STORE_REMOVE = "store_remove"
    STORE_STATUS = "store_status"
    STORE_CONFIG = "store_config"
    STORE_RESTORE = "store_restore"
    SUBSCRIPTION_RESTORE = "subscription_restore"
    PROJECTION_RESTORE = "projection_restore"
    SUBSCRIPTION_CREATE = "subscription_create"
    SUBSCRIPTION_DELETE = "subscription_delete"
    SUBSCRIPTION_LIST = "subscription_list"
    SUBSCRIPTION_INFO = "subscription_info"
    SUBSCRIPTION_PARKED = "subscription_parked"
    ACK = "ack"
    NACK = "nack"
    REPLAY_PARKED = "replay_parked"
    WATCH = "watch"
    SNAPSHOT_RECORD = "snapshot_record"
    SNAPSHOT_READ = "snapshot_read"
    SNAPSHOT_DELETE = "snapshot_delete"
    SNAPSHOT_LIST = "snapshot_list"
    SCAVENGE = "scavenge"
    DCB_APPEND = "dcb_append"
    DCB_READ = "dcb_read"
    PROJECTION_CREATE = "projection_create"
    PROJECTION_UPDATE = "projection_update"
    PROJECTION_DELETE = "projection_delete"
    PROJECTION_ENABLE = "projection_enable"
    PROJECTION_DISABLE = "projection_disable"
    PROJECTION_RESET = "projection_reset"
    PROJECTION_LIST = "projection_list"
    PROJECTION_INFO = "projection_info"
    PROJECTION_STATE = "projection_state"
    PROJECTION_RESULT = "projection_result"
    PROJECTION_PARTITIONS = "projection_partitions"


LIFECYCLE_OPERATIONS = frozenset({Op.SET_STREAM_METADATA, Op.DELETE_STREAM, Op.TOMBSTONE_STREAM})
WRITE_OPERATIONS = frozenset({Op.APPEND, Op.APPEND_MULTI, Op.DCB_APPEND}) | LIFECYCLE_OPERATIONS
READ_OPERATIONS = frozenset(
    {Op.READ_STREAM, Op.READ_ALL, Op.LIST_STREAMS, Op.STREAM_INFO, Op.DCB_READ}
)
"""The reads the servers send straight to a reader (`api_mappings`)."""
# Operations the gateway forwards, as they came, to the node-local service that owns them.
FORWARDED_OPERATIONS = {
    **dict.fromkeys(
        (
            Op.SUBSCRIPTION_CREATE,
            Op.SUBSCRIPTION_DELETE,
            Op.SUBSCRIPTION_LIST,
            Op.SUBSCRIPTION_INFO,
            Op.SUBSCRIPTION_PARKED,
            Op.ACK,
            Op.NACK,
            Op.REPLAY_PARKED,
            Op.WATCH,
        ),
        SUBSCRIPTIONS_SERVICE,
    ),
    **dict.fromkeys(
        (Op.SNAPSHOT_RECORD, Op.SNAPSHOT_READ, Op.SNAPSHOT_DELETE, Op.SNAPSHOT_LIST),
        SNAPSHOTS_SERVICE,
    ),
    Op.SCAVENGE: SCAVENGER_SERVICE,
    **dict.fromkeys(
        (
            Op.PROJECTION_CREATE,
            Op.PROJECTION_UPDATE,
            Op.PROJECTION_DELETE,
            Op.PROJECTION_ENABLE,
            Op.PROJECTION_DISABLE,
            Op.PROJECTION_RESET,
            Op.PROJECTION_LIST,
            Op.PROJECTION_INFO,
            Op.PROJECTION_STATE,
            Op.PROJECTION_RESULT,
            Op.PROJECTION_PARTITIONS,
        ),
        PROJECTIONS_SERVICE,
    ),
}
