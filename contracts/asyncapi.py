"""The public NATS API as an AsyncAPI 3.0 document, built from the contract structs.

`OPERATIONS` is the one table of public request-reply operations: each `Op` with its request
and result struct. `asyncapi_document()` turns it, and the subjects esdb publishes on, into
AsyncAPI; every payload schema comes from `msgspec.json.schema_components` of the structs, so
the document cannot drift from the wire. `docs/asyncapi.json` is its committed output
(`esdb api-docs`), and a test fails when the two differ.
"""

from __future__ import annotations

import functools
import inspect
import json
import operator
from types import UnionType
from typing import Any, Final, NamedTuple, Union, get_args, get_origin

import msgspec

from esdb import __version__
from esdb.contracts import api, projections, restore, snapshots, subscriptions, watches
from esdb.contracts.api import JSON_CONTENT_TYPE, MSGPACK_CONTENT_TYPE
from esdb.contracts.errors import ErrorBody, ErrorCode, ErrorReply
from esdb.contracts.subjects import (
    API_PREFIX,
    GATEWAY_QUEUE,
    LEADER_PREFIX,
    SYSTEM_STORE,
    WRITER_SERVING,
    Op,
)
from esdb.contracts.subscriptions import ATTEMPT_HEADER, SUBS_PREFIX
from esdb.contracts.topics import EVENT_ID_HEADER, EVENTS_PREFIX, POSITION_HEADER
from esdb.contracts.watches import WATCH_TOKEN

ASYNCAPI_VERSION: Final = "3.0.0"
SCHEMAS: Final = "#/components/schemas/"


class ApiOperation(NamedTuple):
    """One public request-reply operation: `esdb.api.<store>.<name>` (or `_sys`)."""

    name: str
    request: type[msgspec.Struct] | None
    """None: the body is ignored (send an empty one)."""
    result: type[msgspec.Struct]
    tag: str
    summary: str
    system: bool = False


OPERATIONS: Final[tuple[ApiOperation, ...]] = (
    ApiOperation(
        Op.APPEND,
        api.AppendRequest,
        api.AppendResult,
        "streams",
        "Append events to one stream, atomically, if it is at the expected version.",
    ),
    ApiOperation(
        Op.APPEND_MULTI,
        api.AppendMultiRequest,
        api.AppendMultiResult,
        "streams",
        "Append to several streams: all appends land or none do.",
    ),
    ApiOperation(
        Op.READ_STREAM,
        api.ReadStreamRequest,
        api.ReadStreamResult,
        "streams",
        "Read a page of one stream, forward or backward.",
    ),
    ApiOperation(
        Op.READ_ALL,
        api.ReadAllRequest,
        api.ReadAllResult,
        "streams",
        "Read a page of every stream in position order ($all), filtered on the server.",
    ),
    ApiOperation(
        Op.DCB_APPEND,
        api.DcbAppendRequest,
        api.DcbAppendResult,
        "dcb",
        "Append tagged events (stream `$dcb`) unless an event after `after` matches the "
        "condition's query (`append_condition_failed`).",
    ),
    ApiOperation(
        Op.DCB_READ,
        api.DcbReadRequest,
        api.DcbReadResult,
        "dcb",
        "Read DCB events matching a query (types and tags), with the store's head.",
    ),
    ApiOperation(
        Op.LIST_STREAMS,
        api.ListStreamsRequest,
        api.ListStreamsResult,
        "streams",
        "List streams in name order.",
    ),
    ApiOperation(
        Op.STREAM_INFO,
        api.StreamInfoRequest,
        api.StreamInfoResult,
        "streams",
        "A stream's version, metadata and state.",
    ),
    ApiOperation(
        Op.SET_STREAM_METADATA,
        api.SetStreamMetadataRequest,
        api.StreamVersionResult,
        "streams",
        "Replace a stream's metadata (max_count, max_age, truncate_before, custom keys).",
    ),
    ApiOperation(
        Op.DELETE_STREAM,
        api.DeleteStreamRequest,
        api.StreamVersionResult,
        "streams",
        "Soft-delete a stream: reads say stream_not_found; it may be written again.",
    ),
    ApiOperation(
        Op.TOMBSTONE_STREAM,
        api.DeleteStreamRequest,
        api.StreamVersionResult,
        "streams",
        "Delete a stream for good: every later request on it fails with stream_deleted.",
    ),
    ApiOperation(
        Op.SCAVENGE,
        api.ScavengeRequest,
        api.ScavengeReport,
        "streams",
        "Remove, now, the events no read can return any more.",
    ),
    ApiOperation(
        Op.SUBSCRIPTION_CREATE,
        subscriptions.SubscriptionCreateRequest,
        subscriptions.SubscriptionInfo,
        "subscriptions",
        "Create a persistent subscription (consumer group).",
    ),
    ApiOperation(
        Op.SUBSCRIPTION_DELETE,
        subscriptions.SubscriptionRequest,
        subscriptions.SubscriptionDeleted,
        "subscriptions",
        "Delete a persistent subscription and its parked events.",
    ),
    ApiOperation(
        Op.SUBSCRIPTION_LIST,
        subscriptions.SubscriptionListRequest,
        subscriptions.SubscriptionList,
        "subscriptions",
        "Every persistent subscription of the store.",
    ),
    ApiOperation(
        Op.SUBSCRIPTION_INFO,
        subscriptions.SubscriptionRequest,
        subscriptions.SubscriptionInfo,
        "subscriptions",
        "A persistent subscription's settings, checkpoint, lag and consumers.",
    ),
    ApiOperation(
        Op.SUBSCRIPTION_PARKED,
        subscriptions.ParkedListRequest,
        subscriptions.ParkedPage,
        "subscriptions",
        "A page of a persistent subscription's parked events.",
    ),
    ApiOperation(
        Op.ACK,
        subscriptions.AckRequest,
        subscriptions.AckResult,
        "subscriptions",
        "Settle deliveries: handled.",
    ),
    ApiOperation(
        Op.NACK,
        subscriptions.NackRequest,
        subscriptions.AckResult,
        "subscriptions",
        "Settle deliveries as failed: retry, park, skip or stop.",
    ),
    ApiOperation(
        Op.REPLAY_PARKED,
        subscriptions.SubscriptionRequest,
        subscriptions.ReplayResult,
        "subscriptions",
        "Deliver a persistent subscription's parked events again.",
    ),
    ApiOperation(
        Op.WATCH,
        watches.WatchRequest,
        watches.WatchResult,
        "subscriptions",
        "Open or renew a watch: live events filtered on their JSON payload by the server.",
    ),
    ApiOperation(
        Op.SNAPSHOT_RECORD,
        snapshots.SnapshotRecordRequest,
        snapshots.SnapshotInfo,
        "snapshots",
        "Store (or replace) a snapshot; optionally keep only the last N versions.",
    ),
    ApiOperation(
        Op.SNAPSHOT_READ,
        snapshots.SnapshotReadRequest,
        snapshots.SnapshotOut,
        "snapshots",
        "Read one version of a snapshot, or the latest.",
    ),
    ApiOperation(
        Op.SNAPSHOT_DELETE,
        snapshots.SnapshotDeleteRequest,
        snapshots.SnapshotDeleted,
        "snapshots",
        "Delete one exact version of a snapshot.",
    ),
    ApiOperation(
        Op.SNAPSHOT_LIST,
        snapshots.SnapshotListRequest,
        snapshots.SnapshotList,
        "snapshots",
        "List snapshots without their payloads, by source and/or stream.",
    ),
    ApiOperation(
        Op.PROJECTION_CREATE,
        projections.ProjectionCreateRequest,
        projections.ProjectionInfo,
        "projections",
        "Define a JavaScript projection (KurrentDB's language), run from the store's start or "
        "end; a query that does not compile is `invalid_request` with its error and line.",
    ),
    ApiOperation(
        Op.PROJECTION_UPDATE,
        projections.ProjectionUpdateRequest,
        projections.ProjectionInfo,
        "projections",
        "Replace a projection's query and/or `emit_enabled`; its state and checkpoint stay.",
    ),
    ApiOperation(
        Op.PROJECTION_DELETE,
        projections.ProjectionNameRequest,
        projections.ProjectionDeleted,
        "projections",
        "Delete a projection and its states; the events it emitted stay.",
    ),
    ApiOperation(
        Op.PROJECTION_ENABLE,
        projections.ProjectionNameRequest,
        projections.ProjectionInfo,
        "projections",
        "Run a projection (again, after a fault: from where it stopped).",
    ),
    ApiOperation(
        Op.PROJECTION_DISABLE,
        projections.ProjectionNameRequest,
        projections.ProjectionInfo,
        "projections",
        "Stop a projection where it is.",
    ),
    ApiOperation(
        Op.PROJECTION_RESET,
        projections.ProjectionNameRequest,
        projections.ProjectionInfo,
        "projections",
        "Clear a projection's states and checkpoint; it starts again from the store's first "
        "event. The events it emitted stay.",
    ),
    ApiOperation(
        Op.PROJECTION_LIST,
        projections.ProjectionListRequest,
        projections.ProjectionList,
        "projections",
        "Every projection of the store, with status, position, lag and counts.",
    ),
    ApiOperation(
        Op.PROJECTION_INFO,
        projections.ProjectionNameRequest,
        projections.ProjectionInfo,
        "projections",
        "One projection: status (`running`, `stopped`, `faulted`), reason, position, lag, "
        "events processed and emitted, partitions.",
    ),
    ApiOperation(
        Op.PROJECTION_STATE,
        projections.ProjectionStateRequest,
        projections.ProjectionStateOut,
        "projections",
        "A projection's state: a partition's, or the shared one.",
    ),
    ApiOperation(
        Op.PROJECTION_RESULT,
        projections.ProjectionStateRequest,
        projections.ProjectionResultOut,
        "projections",
        "A projection's result: the state through its `transformBy`/`filterBy`.",
    ),
    ApiOperation(
        Op.PROJECTION_PARTITIONS,
        projections.ProjectionPartitionsRequest,
        projections.ProjectionPartitions,
        "projections",
        "A page of a projection's partitions, in key order, each with its state and result.",
    ),
    ApiOperation(
        Op.HEALTH,
        None,
        api.Health,
        "cluster",
        "ok when a leader takes writes and a reader answers.",
        system=True,
    ),
    ApiOperation(
        Op.CLUSTER_STATUS,
        None,
        api.ClusterStatus,
        "cluster",
        "Every node's role, applied sequence and lag, the log's replicas, and agreement.",
        system=True,
    ),
    ApiOperation(
        Op.CLUSTER_STEP_DOWN,
        api.StepDownRequest,
        api.SteppedDown,
        "cluster",
        "The writer leader finishes its entry in flight and hands leadership to a caught-up "
        "follower.",
        system=True,
    ),
    ApiOperation(
        Op.CLUSTER_REPLICAS,
        api.ReplicasRequest,
        api.ReplicasSet,
        "cluster",
        "Set the JetStream replica count of the log, the lease, the members and the images.",
        system=True,
    ),
    ApiOperation(
        Op.CLUSTER_REMOVE,
        api.RemoveNodeRequest,
        api.NodeRemovedResult,
        "cluster",
        "Take a stopped node out for good: replicas move off it, its server leaves JetStream, "
        "and its data directory can no longer rejoin.",
        system=True,
    ),
    ApiOperation(
        Op.STORE_CREATE,
        api.StoreRequest,
        api.StoreInfo,
        "stores",
        "Create a store (an event log of its own).",
        system=True,
    ),
    ApiOperation(
        Op.STORE_REMOVE,
        api.StoreRequest,
        api.StoreRemoved,
        "stores",
        "Remove a store and its data on every node.",
        system=True,
    ),
    ApiOperation(
        Op.STORE_LIST,
        api.StoreListRequest,
        api.StoreList,
        "stores",
        "Every store and its config.",
        system=True,
    ),
    ApiOperation(
        Op.STORE_STATUS,
        api.StoreRequest,
        api.StoreInfo,
        "stores",
        "A store's config and what the answering node holds of it.",
        system=True,
    ),
    ApiOperation(
        Op.STORE_CONFIG,
        api.StoreRequest,
        api.StoreInfo,
        "stores",
        "A store's config, replaced first when the request carries one.",
        system=True,
    ),
    ApiOperation(
        Op.STORE_RESTORE,
        restore.StoreRestoreRequest,
        restore.StoreRestoreResult,
        "stores",
        "Admin only: restore streams (at their versions, states and metadata) and snapshots "
        "as an export holds them, only at the expected store position (esdb import).",
        system=True,
    ),
    ApiOperation(
        Op.SUBSCRIPTION_RESTORE,
        restore.SubscriptionRestoreRequest,
        subscriptions.SubscriptionInfo,
        "subscriptions",
        "Admin only: create a persistent subscription with its checkpoint and parked events.",
        system=True,
    ),
    ApiOperation(
        Op.PROJECTION_RESTORE,
        restore.ProjectionRestoreRequest,
        projections.ProjectionInfo,
        "projections",
        "Admin only: create a projection with its checkpoint, counts and partition states "
        "(esdb import).",
        system=True,
    ),
)

TAGS: Final = {
    "streams": "Appends, reads and stream lifecycle.",
    "dcb": "Dynamic consistency boundaries: tagged events, conditional appends, reads by "
    "query (docs/dcb.md).",
    "subscriptions": "Persistent subscriptions (consumer groups) and watches.",
    "snapshots": "Snapshots of aggregates.",
    "projections": "JavaScript projections run by the server (docs/projections.md).",
    "stores": "Creating, configuring and removing stores (cluster-wide, on `_sys`).",
    "cluster": "Health and cluster status (cluster-wide, on `_sys`).",
    "live": "Messages esdb publishes: live events, deliveries, watches.",
}

_DESCRIPTION: Final = f"""\
esdb's public API over NATS. Any NATS client can use it.

- **Requests** are NATS request-reply on `{API_PREFIX}.{{store}}.{{operation}}`, or \
`{API_PREFIX}.{SYSTEM_STORE}.{{operation}}` for cluster-wide operations. Every request may \
carry `timeout_ms`.
- **Encoding**: JSON (`{JSON_CONTENT_TYPE}`) by default; send the header \
`Content-Type: {MSGPACK_CONTENT_TYPE}` to speak msgpack, with the same fields. The reply is in \
the request's encoding. Event and snapshot `data`/`metadata` with content type \
`{JSON_CONTENT_TYPE}` are JSON values in JSON; any other content type is base64 in JSON and \
raw bytes in msgpack.
- **Errors**: every reply is either the operation's result or \
`{{"error": {{"code", "message", "details"}}}}`; branch on `code` (`ErrorCode`), never on the \
message.
- **Live events** are published on \
`{EVENTS_PREFIX}.{{store}}.{{category}}.{{stream}}.{{event_type}}`, persistent subscription \
deliveries on `{SUBS_PREFIX}.{{store}}.{{subscription}}`, watches on \
`{SUBS_PREFIX}.{{store}}.{WATCH_TOKEN}.{{watch}}`.

Generated from the contract structs of esdb {__version__} (`esdb api-docs`); see docs/api.md."""

_PARAMETERS: Final = {
    "store": "The store: 1-64 letters, digits, `_` or `-`, not starting with `_` or `-`. "
    "The default store is `default` (`ESDB_DEFAULT_STORE`).",
    "category": "The stream id before its first `-`, escaped as one subject token.",
    "stream": "The stream id, escaped as one subject token: bytes outside `[A-Za-z0-9_-]` "
    "become `%XX` (uppercase hex of the UTF-8 bytes), an empty token is `%`.",
    "event_type": "The event type, escaped as one subject token like `stream`.",
    "subscription": "The persistent subscription's name; consumers subscribe in the queue "
    "group of that name.",
    "watch": "The watch id, from the `watch` reply.",
}


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of esdb's public NATS API, as JSON-ready builtins."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {"ErrorReply": _message(ErrorReply, "A failed request.")}
    for op in OPERATIONS:
        _add_request_reply(op, channels, operations, messages)
    _add_published(channels, operations, messages)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "esdb",
            "version": __version__,
            "description": _DESCRIPTION,
            "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        },
        "defaultContentType": JSON_CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "`esdb up`'s default NATS server.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": contract_schemas(),
            "messages": messages,
            "parameters": {name: {"description": text} for name, text in _PARAMETERS.items()},
        },
    }


def asyncapi_json() -> str:
    """`asyncapi_document()` as the text of docs/asyncapi.json."""
    return json.dumps(asyncapi_document(), indent=2, ensure_ascii=False) + "\n"


def contract_types() -> list[type[Any]]:
    """Every type whose schema the document holds, in a stable order."""
    types: list[type[Any]] = [ErrorReply, ErrorCode, api.EventOut, subscriptions.Receipt]
    for op in OPERATIONS:
        for struct in (op.request, op.result):
            if struct is not None and struct not in types:
                types.append(struct)
    return types


def contract_schemas() -> dict[str, Any]:
    """The JSON schemas of `contract_types()`, as msgspec derives them, keyed by struct name."""
    twins: dict[type[Any], type[Any]] = {}
    _, components = msgspec.json.schema_components(
        [_schema_twin(t, twins) for t in contract_types()],
        schema_hook=_any_object,
        ref_template=SCHEMAS + "{name}",
    )
    # ErrorBody.code is a str on the wire; ErrorCode is what it may hold.
    code = components[ErrorBody.__name__]["properties"]["code"]
    if code != {"type": "string"}:
        raise TypeError(f"ErrorBody.code is now {code}; revisit this override")
    components[ErrorBody.__name__]["properties"]["code"] = {"$ref": SCHEMAS + ErrorCode.__name__}
    _clean_descriptions(components)
    return {name: components[name] for name in sorted(components)}


def _any_object(tp: Any) -> dict[str, Any]:
    """`object` (as in `dict[str, object]`) is any JSON value."""
    if tp is object:
        return {"description": "Any JSON value."}
    raise NotImplementedError(f"no JSON schema for {tp!r}")


def _schema_twin(tp: Any, twins: dict[type[Any], type[Any]]) -> Any:
    """`tp` with each struct that has a `msgspec.Raw` default (empty: "not given") replaced by a
    twin of the same name, fields and doc whose default is a factory, because msgspec cannot
    write a Raw as a schema's `default`. The field stays optional."""
    origin = get_origin(tp)
    if origin is None:
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            return _struct_twin(tp, twins)
        return tp
    args = tuple(_schema_twin(arg, twins) for arg in get_args(tp))
    if args == get_args(tp):
        return tp
    if origin in (Union, UnionType):
        return functools.reduce(operator.or_, args)
    return origin[args]


def _struct_twin(cls: type[msgspec.Struct], twins: dict[type[Any], type[Any]]) -> type[Any]:
    if cls in twins:
        return twins[cls]
    twins[cls] = cls  # ends the walk should a struct ever refer to itself
    fields = msgspec.structs.fields(cls)
    types = [_schema_twin(f.type, twins) for f in fields]
    raw = [isinstance(f.default, msgspec.Raw) for f in fields]
    if not any(raw) and all(t is f.type for t, f in zip(types, fields, strict=True)):
        return cls
    config = cls.__struct_config__
    twin = msgspec.defstruct(
        cls.__name__,
        [
            (f.name, t, _twin_field(f, is_raw))
            for f, t, is_raw in zip(fields, types, raw, strict=True)
        ],
        module=cls.__module__,
        namespace={"__doc__": cls.__doc__},
        kw_only=True,
        omit_defaults=config.omit_defaults,
        forbid_unknown_fields=config.forbid_unknown_fields,
        frozen=config.frozen,
        array_like=config.array_like,
        tag=config.tag,
        tag_field=config.tag_field,
    )
    twins[cls] = twin
    return twin


def _twin_field(field: msgspec.structs.FieldInfo, raw_default: bool) -> Any:
    if raw_default:
        return msgspec.field(name=field.encode_name, default_factory=msgspec.Raw)
    if field.default_factory is not msgspec.NODEFAULT:
        return msgspec.field(name=field.encode_name, default_factory=field.default_factory)
    if field.default is not msgspec.NODEFAULT:
        return msgspec.field(name=field.encode_name, default=field.default)
    return msgspec.field(name=field.encode_name)


def _clean_descriptions(node: Any) -> None:
    """Docstring indentation out of descriptions (Python 3.13 strips it, 3.11 does not)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                node[key] = inspect.cleandoc(value)
            else:
                _clean_descriptions(value)
    elif isinstance(node, list):
        for item in node:
            _clean_descriptions(item)


def _ref(pointer: str) -> dict[str, str]:
    return {"$ref": pointer}


def _message(
    struct: type[Any] | None,
    summary: str,
    *,
    name: str | None = None,
    headers: dict[str, Any] | None = None,
    content_type: str | None = None,
) -> dict[str, Any]:
    schema = "Empty" if struct is None else struct.__name__
    name = name or schema
    message: dict[str, Any] = {"name": name, "title": name, "summary": summary}
    if content_type is not None:
        message["contentType"] = content_type
    if headers is not None:
        message["headers"] = headers
    if struct is None:
        message["payload"] = {"description": "Ignored: send an empty body."}
    else:
        message["payload"] = _ref(SCHEMAS + schema)
    return message


def _headers(fields: dict[str, str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            name: {"type": "string", "description": text} for name, text in fields.items()
        },
    }
    if required:
        schema["required"] = list(required)
    return schema


_REQUEST_HEADERS: Final = _headers(
    {
        "Content-Type": f"`{JSON_CONTENT_TYPE}` (the default) or `{MSGPACK_CONTENT_TYPE}`; "
        "the reply comes in the same encoding.",
    }
)
_EVENT_HEADERS: Final = {
    POSITION_HEADER: "The event's global position in the store (decimal); drop repeats by it.",
    EVENT_ID_HEADER: "The event's id.",
}


def _add_request_reply(
    op: ApiOperation,
    channels: dict[str, Any],
    operations: dict[str, Any],
    messages: dict[str, Any],
) -> None:
    request = "Empty" if op.request is None else op.request.__name__
    result = op.result.__name__
    if request not in messages:
        messages[request] = _message(op.request, _first_line(op.request), headers=_REQUEST_HEADERS)
    if result not in messages:
        messages[result] = _message(op.result, _first_line(op.result))
    store = SYSTEM_STORE if op.system else "{store}"
    channel: dict[str, Any] = {
        "address": f"{API_PREFIX}.{store}.{op.name}",
        "title": op.name,
        "summary": op.summary,
        "messages": {"request": _ref(f"#/components/messages/{request}")},
    }
    if not op.system:
        channel["parameters"] = {"store": _ref("#/components/parameters/store")}
    reply_id = f"{op.name}_reply"
    channels[op.name] = channel
    channels[reply_id] = {
        "address": None,
        "title": f"{op.name} reply",
        "description": "The request's reply subject (the requester's inbox).",
        "messages": {
            "result": _ref(f"#/components/messages/{result}"),
            "error": _ref("#/components/messages/ErrorReply"),
        },
    }
    operations[op.name] = {
        "action": "receive",
        "channel": _ref(f"#/channels/{op.name}"),
        "title": op.name,
        "summary": op.summary,
        "tags": [{"name": op.tag}],
        "bindings": {"nats": {"queue": GATEWAY_QUEUE, "bindingVersion": "0.1.0"}},
        "messages": [_ref(f"#/channels/{op.name}/messages/request")],
        "reply": {
            "channel": _ref(f"#/channels/{reply_id}"),
            "messages": [
                _ref(f"#/channels/{reply_id}/messages/result"),
                _ref(f"#/channels/{reply_id}/messages/error"),
            ],
        },
    }


def _add_published(
    channels: dict[str, Any], operations: dict[str, Any], messages: dict[str, Any]
) -> None:
    """What esdb publishes: live events, persistent subscription deliveries, watch events."""
    messages["LiveEvent"] = _message(
        api.EventOut,
        "A committed event, published once by the leader's emitter (at-least-once).",
        name="LiveEvent",
        headers=_headers(_EVENT_HEADERS, tuple(_EVENT_HEADERS)),
        content_type=JSON_CONTENT_TYPE,
    )
    delivery_headers = {
        **_EVENT_HEADERS,
        ATTEMPT_HEADER: "1 on the first delivery, +1 on each redelivery.",
    }
    messages["Delivery"] = _message(
        api.EventOut,
        "An event for one consumer of the group; settle it with `ack` or `nack`.",
        name="Delivery",
        headers=_headers(delivery_headers, tuple(delivery_headers)),
        content_type=JSON_CONTENT_TYPE,
    )
    messages["WatchEvent"] = _message(
        api.EventOut,
        "An event that matched the watch's selector and payload conditions.",
        name="WatchEvent",
        headers=_headers(_EVENT_HEADERS, tuple(_EVENT_HEADERS)),
        content_type=JSON_CONTENT_TYPE,
    )
    receipt = subscriptions.Receipt.__name__
    messages[receipt] = _message(
        subscriptions.Receipt,
        _first_line(subscriptions.Receipt),
        content_type=JSON_CONTENT_TYPE,
    )
    store = _ref("#/components/parameters/store")
    channels["live_events"] = {
        "address": f"{EVENTS_PREFIX}.{{store}}.{{category}}.{{stream}}.{{event_type}}",
        "title": "live events",
        "description": (
            "Every committed event, once, in position order per store. NATS wildcards select: "
            f"a stream `{EVENTS_PREFIX}.{{store}}.{{category}}.{{stream}}.*`, a category "
            f"`{EVENTS_PREFIX}.{{store}}.{{category}}.>`, an event type "
            f"`{EVENTS_PREFIX}.{{store}}.*.*.{{event_type}}`, everything "
            f"`{EVENTS_PREFIX}.{{store}}.>`. After a leader change a few events may come "
            f"again: drop repeats by `{POSITION_HEADER}`."
        ),
        "parameters": {
            name: _ref(f"#/components/parameters/{name}")
            for name in ("store", "category", "stream", "event_type")
        },
        "messages": {"event": _ref("#/components/messages/LiveEvent")},
    }
    channels["subscription_delivery"] = {
        "address": f"{SUBS_PREFIX}.{{store}}.{{subscription}}",
        "title": "persistent subscription deliveries",
        "description": (
            "Each selected event, to one consumer of the queue group named like the "
            "subscription, until it is acked (`ack`) or settled by `nack`. Redelivered with "
            f"`{ATTEMPT_HEADER}` + 1 when not answered within `message_timeout_ms`; parked "
            "after `max_retries`."
        ),
        "parameters": {
            "store": store,
            "subscription": _ref("#/components/parameters/subscription"),
        },
        "messages": {"delivery": _ref("#/components/messages/Delivery")},
    }
    channels["subscription_receipt"] = {
        "address": None,
        "title": "delivery receipt",
        "description": (
            "A delivery's reply subject. A consumer may answer it with a receipt, optional: "
            "acks settle, receipts only tell the service who has the event (`accepted` false: "
            "the consumer is full, offer it to another)."
        ),
        "messages": {"receipt": _ref(f"#/components/messages/{receipt}")},
    }
    channels["watch_events"] = {
        "address": f"{SUBS_PREFIX}.{{store}}.{WATCH_TOKEN}.{{watch}}",
        "title": "watch events",
        "description": (
            "The events a watch selected, in position order. Subscribe before sending "
            f"`{Op.WATCH}`; renew it within `ttl_ms` with `after` = the last position received."
        ),
        "parameters": {"store": store, "watch": _ref("#/components/parameters/watch")},
        "messages": {"event": _ref("#/components/messages/WatchEvent")},
    }
    operations["publish_live_event"] = {
        "action": "send",
        "channel": _ref("#/channels/live_events"),
        "summary": "Publish every committed event (the leader's emitter).",
        "tags": [{"name": "live"}],
        "messages": [_ref("#/channels/live_events/messages/event")],
    }
    operations["deliver_to_subscription"] = {
        "action": "send",
        "channel": _ref("#/channels/subscription_delivery"),
        "summary": "Deliver a persistent subscription's events to its consumers.",
        "tags": [{"name": "live"}],
        "messages": [_ref("#/channels/subscription_delivery/messages/delivery")],
        "reply": {
            "channel": _ref("#/channels/subscription_receipt"),
            "messages": [_ref("#/channels/subscription_receipt/messages/receipt")],
        },
    }
    operations["publish_watch_event"] = {
        "action": "send",
        "channel": _ref("#/channels/watch_events"),
        "summary": "Publish the events a watch selects.",
        "tags": [{"name": "live"}],
        "messages": [_ref("#/channels/watch_events/messages/event")],
    }
    messages["LeaderServing"] = {
        "name": "LeaderServing",
        "title": "LeaderServing",
        "summary": "A new writer leader takes writes; the payload is its node id.",
        "contentType": "text/plain",
        "payload": {"type": "string"},
    }
    channels["writer_serving"] = {
        "address": WRITER_SERVING,
        "title": "writer leader serving",
        "description": (
            "A node's writer announces here, once, that it has become the leader and takes "
            "writes. A write still waiting for its reply then went to an earlier leader or to "
            "none: give it up and send it again with the same event ids. A client that does "
            f"may send writes to `{LEADER_PREFIX}.{{store}}.<operation>` instead of "
            f"`{API_PREFIX}.{{store}}.<operation>`: the same request and reply, without the "
            "gateways' copy that answers such writes `timeout` for clients that do not "
            "listen here. Subscribe only."
        ),
        "messages": {"serving": _ref("#/components/messages/LeaderServing")},
    }
    operations["announce_writer_leader"] = {
        "action": "send",
        "channel": _ref("#/channels/writer_serving"),
        "summary": "Announce that this node's writer leads and takes writes.",
        "tags": [{"name": "cluster"}],
        "messages": [_ref("#/channels/writer_serving/messages/serving")],
    }


def _first_line(struct: type[Any] | None) -> str:
    if struct is None:
        return "No request fields."
    return (
        inspect.cleandoc(struct.__doc__ or struct.__name__).split("\n\n", 1)[0].replace("\n", " ")
    )
