"""Hostile input on every public operation: random and malformed JSON, msgpack and raw bytes
get a typed error or a valid result, no service crashes or restarts, and the data stored before
reads back unchanged.

The stack is the test's own (its pid files tell a restart). Examples are derandomized, so a CI
run is reproducible; a failure prints the subject, body and reply it was shrunk to.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esdb.contracts.errors import ErrorCode
from tests.stack import Api, Stack, connect_api, start_stack

STORE = "default"
MSGPACK = {"Content-Type": "application/msgpack"}
REPLY_TIMEOUT_S = 15.0
SWEEP_CONCURRENCY = 16
SEEDED_EVENTS = 8
# Short server-side waits: a fuzzed `min_position` far ahead waits for the default timeout.
STACK_ENV = {"ESDB_TIMEOUT_MS": "500"}

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Every public operation and the fields of its request (contracts/api.py, subscriptions.py,
# watches.py, snapshots.py; DESIGN.md section 5).
OPERATIONS: dict[str, tuple[str, ...]] = {
    "append": ("stream", "expected_version", "events"),
    "append_multi": ("appends",),
    "read_stream": ("stream", "from", "direction", "limit", "min_position"),
    "read_all": ("from_position", "direction", "limit", "filter", "min_position"),
    "list_streams": ("after", "limit"),
    "stream_info": ("stream",),
    "set_stream_metadata": ("stream", "expected_version", "metadata"),
    "delete_stream": ("stream", "expected_version"),
    "tombstone_stream": ("stream", "expected_version"),
    "subscription_create": (
        "subscription",
        "selector",
        "start",
        "message_timeout_ms",
        "max_retries",
        "max_in_flight",
    ),
    "subscription_delete": ("subscription",),
    "subscription_list": (),
    "subscription_info": ("subscription",),
    "subscription_parked": ("subscription", "after", "limit"),
    "ack": ("subscription", "positions", "consumer"),
    "nack": ("subscription", "positions", "action", "reason", "consumer"),
    "replay_parked": ("subscription",),
    "watch": ("selector", "watch", "after", "ttl_ms"),
    "snapshot_record": (
        "source_uuid",
        "stream_uuid",
        "version",
        "data",
        "metadata",
        "content_type",
        "keep_last",
    ),
    "snapshot_read": ("source_uuid", "stream_uuid", "version"),
    "snapshot_delete": ("source_uuid", "stream_uuid", "version"),
    "snapshot_list": ("source_uuid", "stream_uuid", "after", "limit"),
    "scavenge": (),
    "dcb_append": ("events", "condition"),
    "dcb_read": ("query", "after", "limit", "direction", "min_position"),
}
# Store administration on `_sys` (store_create, store_remove, ...) is left out: a fuzzed
# store_remove could remove the very store whose data the test checks.
SYSTEM_OPERATIONS = ("health", "cluster_status")
UNKNOWN_OPERATIONS = ("explode", "APPEND", "read-all", "readStream")

# The keys every result of an operation has.
RESULT_KEYS: dict[str, set[str]] = {
    "append": {"first_version", "last_version", "first_position", "last_position"},
    "append_multi": {"results"},
    "read_stream": {"events", "next", "last_version"},
    "read_all": {"events", "next_position"},
    "list_streams": {"streams", "next"},
    "stream_info": {"stream", "version", "metadata", "state"},
    "set_stream_metadata": {"version"},
    "delete_stream": {"version"},
    "tombstone_stream": {"version"},
    "subscription_create": {"subscription", "subject", "selector", "checkpoint"},
    "subscription_delete": {"subscription", "deleted"},
    "subscription_list": {"subscriptions"},
    "subscription_info": {"subscription", "subject", "selector", "checkpoint"},
    "subscription_parked": {"parked", "next"},
    "ack": {"settled"},
    "nack": {"settled"},
    "replay_parked": {"replaying"},
    "watch": {"watch", "subject", "after"},
    "snapshot_record": {"source_uuid", "stream_uuid", "version", "size"},
    "snapshot_read": {"source_uuid", "stream_uuid", "version", "data", "content_type"},
    "snapshot_delete": {"source_uuid", "stream_uuid", "version"},
    "snapshot_list": {"snapshots", "next"},
    "health": {"status", "leader", "readers"},
    "cluster_status": {"leader", "nodes"},
    "scavenge": {"store", "streams", "events"},
    "dcb_append": {"position"},
    "dcb_read": {"events", "head"},
}
CONTRACT_CODES = {code.value for code in ErrorCode} - {ErrorCode.INTERNAL.value}
CODES_NAMING_A_FIELD = {ErrorCode.INVALID_REQUEST.value, ErrorCode.TOO_LARGE.value}

# ---- values ------------------------------------------------------------------------------

EDGE_INTS = (
    0,
    1,
    -1,
    -2,
    2,
    100,
    10_001,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63),
    -(2**63) - 1,
    10**30,
    -(10**30),
)
EDGE_STRINGS = (
    "",
    "start",
    "end",
    "latest",
    "any",
    "no_stream",
    "stream_exists",
    "forward",
    "backward",
    "retry",
    "park",
    "skip",
    "stop",
    "application/json",
    "application/octet-stream",
    "application/msgpack",
    "$all",
    "$system",
    "fuzz-1",
    "fuzz-2",
    "order-7",
    "a\x00b",
    "tab\tname",
    "\x7f",
    "\u202e\u0000",
    "\ufeff",
    "\U0001f600" * 10,
    "*",
    ">",
    "a.b",
    "a b",
    "%",
    "%zz",
    "%2",
    "(",
    "[",
    ".*",
    "_watch",
    "-",
    "_x",
    "A" * 64,
    "A" * 65,
    "aGVsbG8=",
    "not base64!",
    str(uuid.UUID(int=0)),
    "6f1c7f4e-3b1a-4c43-9b8e-0d5e1e0b7a11",
    "order.*.*",
    "*.*.*",
    "a.>",
    "%zz.*.*",
    "order.>.x",
)

# Long values by (text, repeat), so strategy reprs stay short.
LONG_STRINGS = (("x", 500), ("x", 501), ("x", 600), ("\u00e9", 300), ("y", 5000), ("z", 70_000))

ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-1000, 1000), st.integers())
# msgpack carries 64-bit integers only.
msgpack_ints = st.one_of(
    st.sampled_from([i for i in EDGE_INTS if -(2**63) <= i < 2**64]),
    st.integers(-1000, 1000),
    st.integers(-(2**63), 2**64 - 1),
)
floats = st.floats(allow_nan=True, allow_infinity=True)
strings = st.one_of(
    st.sampled_from(EDGE_STRINGS),
    st.sampled_from(LONG_STRINGS).map(lambda long: long[0] * long[1]),
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=100, max_size=700),
)
keys = st.one_of(st.sampled_from(EDGE_STRINGS[:20]), st.text(max_size=12))


@functools.cache
def _values(binary: bool) -> st.SearchStrategy[Any]:
    """Any JSON value (and bytes, extension types and integer keys in msgpack)."""
    scalars: list[st.SearchStrategy[Any]] = [
        st.none(),
        st.booleans(),
        msgpack_ints if binary else ints,
        floats,
        strings,
    ]
    if binary:
        scalars += [
            st.binary(max_size=64),
            st.builds(msgspec.msgpack.Ext, st.integers(-128, 127), st.binary(max_size=8)),
        ]
    map_keys = st.one_of(keys, msgpack_ints) if binary else keys
    return st.recursive(
        st.one_of(*scalars),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(map_keys, inner, max_size=4)
        ),
        max_leaves=10,
    )


# A request is built valid-looking, then 0-2 of its fields (at any depth) are replaced by a
# hostile value of their own type, by a value of any type, or dropped; stray keys may be added.
NAMES = st.sampled_from(
    ("fuzz-1", "fuzz-2", "fuzz-3", "order-7", "order-8", "F", "g_1", "\u00e9-\U0001f600")
)
DROP = object()

NESTED: dict[str, tuple[str, ...]] = {
    "events": ("event_id", "type", "data", "metadata", "content_type", "tags"),
    "appends": ("stream", "expected_version", "events"),
    "after": ("source_uuid", "stream_uuid", "version"),
}
LISTS_OF_OBJECTS = {"events", "appends"}
# Objects whose every subset of fields is valid.
SUBSETS: dict[str, tuple[str, ...]] = {
    "filter": (
        "event_types",
        "event_type_prefix",
        "stream_prefix",
        "category",
        "event_type_regex",
        "stream_regex",
    ),
    "range": ("gt", "gte", "lt", "lte"),
    "metadata": ("max_count", "max_age", "truncate_before", "note"),
}
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "expected_version": st.sampled_from(("any", "no_stream", "stream_exists", -1, 0, 1, 7)),
    "from": st.sampled_from(("start", "end", 0, 3)),
    "from_position": st.sampled_from(("start", "end", 1, 3)),
    "start": st.sampled_from(("start", "end", 1)),
    "version": st.sampled_from(("latest", 0, 1, 2)),
    "direction": st.sampled_from(("forward", "backward")),
    "action": st.sampled_from(("retry", "park", "skip", "stop")),
    "content_type": st.sampled_from(("application/json", "application/octet-stream")),
    "event_type_regex": st.sampled_from(("^T", "fuzz", "[A-Z]")),
    "stream_regex": st.sampled_from(("^fuzz", "-1$", ".")),
    "limit": st.integers(1, 20),
    "min_position": st.integers(0, 8),
    "max_retries": st.integers(0, 5),
    "max_in_flight": st.integers(1, 10),
    "message_timeout_ms": st.integers(100, 5000),
    "ttl_ms": st.integers(1000, 5000),
    "keep_last": st.integers(1, 3),
    "timeout_ms": st.sampled_from((300, 2000)),
    "max_count": st.integers(1, 10),
    "max_age": st.integers(1, 10_000),
    "truncate_before": st.integers(0, 5),
    "gt": st.integers(-5, 5),
    "gte": st.integers(-5, 5),
    "lt": st.integers(-5, 5),
    "lte": st.integers(-5, 5),
    "positions": st.lists(st.integers(0, 50), max_size=4),
    "event_id": st.one_of(st.none(), st.uuids(version=4).map(str)),
    "event_types": st.lists(NAMES, max_size=3),
    "path": st.one_of(NAMES, st.lists(st.one_of(NAMES, st.integers(0, 3)), min_size=1, max_size=3)),
    "pattern": st.sampled_from(("fuzz.*.*", ">", "*.*.*", "order.>", "%zz.*.*", "*.order-7.*")),
    "reason": st.text(max_size=20),
    "data": st.sampled_from(({"n": 1}, "aGVsbG8=", [1, 2], "x")),
    "note": st.text(max_size=20),
    "after": st.one_of(NAMES, st.integers(0, 10)),
    "tags": st.lists(NAMES, max_size=3),
    "query": st.fixed_dictionaries(
        {
            "items": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "types": st.lists(NAMES, max_size=2),
                        "tags": st.lists(NAMES, max_size=2),
                    },
                ),
                max_size=3,
            )
        }
    ),
}
STRING_FIELDS = {
    "stream",
    "type",
    "category",
    "event_type",
    "subscription",
    "consumer",
    "watch",
    "source_uuid",
    "stream_uuid",
    "event_type_prefix",
    "stream_prefix",
}
for _name in STRING_FIELDS:
    PLAUSIBLE[_name] = NAMES
STRING_FIELDS |= {
    "event_type_regex",
    "stream_regex",
    "pattern",
    "direction",
    "action",
    "content_type",
    "event_id",
    "reason",
}
INT_FIELDS = {
    "limit",
    "min_position",
    "max_retries",
    "max_in_flight",
    "message_timeout_ms",
    "ttl_ms",
    "keep_last",
    "timeout_ms",
    "max_count",
    "max_age",
    "truncate_before",
}
INT_OR_STRING_FIELDS = {"expected_version", "from", "from_position", "start", "version", "after"}
INT_OR_STRING_FIELDS |= {"gt", "gte", "lt", "lte"}


@functools.cache
def _typed(name: str, binary: bool) -> st.SearchStrategy[Any]:
    """A value of the field's type, hostile within it: huge, negative, empty, odd text."""
    integers = msgpack_ints if binary else ints
    if name in STRING_FIELDS:
        return strings
    if name in INT_FIELDS:
        return integers
    if name in INT_OR_STRING_FIELDS:
        return st.one_of(integers, strings)
    if name == "positions":
        return st.lists(integers, max_size=4)
    if name == "event_types":
        return st.lists(strings, max_size=4)
    if name in ("all", "exists"):
        return st.booleans()
    return _values(binary)


@functools.cache
def _hostile(name: str, binary: bool) -> st.SearchStrategy[Any]:
    """What a mutation puts in field `name`: its type but hostile, any value, or nothing."""
    return st.one_of(_typed(name, binary), _values(binary), st.just(DROP))


def _mutate(
    value: dict[str, Any], mutations: list[tuple[str, Any]], extra: dict[str, Any]
) -> dict[str, Any]:
    mutated = {**extra, **value}
    for name, replacement in mutations:
        if replacement is DROP:
            mutated.pop(name, None)
        else:
            mutated[name] = replacement
    return mutated


def _mutations(fields: tuple[str, ...], binary: bool) -> st.SearchStrategy[Any]:
    one = st.sampled_from(fields).flatmap(
        lambda name: st.tuples(st.just(name), _hostile(name, binary))
    )
    # Mostly untouched at each level, so that some requests are valid as a whole.
    return st.one_of(st.just([]), st.just([]), st.just([]), st.lists(one, min_size=1, max_size=2))


def _mutated(
    base: st.SearchStrategy[dict[str, Any]], fields: tuple[str, ...], binary: bool
) -> st.SearchStrategy[Any]:
    extra = st.one_of(st.just({}), st.dictionaries(keys, _values(binary), max_size=2))
    return st.builds(_mutate, base, _mutations(fields, binary), extra)


@functools.cache
def _plausible(name: str, binary: bool, depth: int) -> st.SearchStrategy[Any]:
    """A value for field `name` that is valid, or nearly (nested objects are mutated too)."""
    if depth >= 3:
        return _typed(name, binary)
    if name == "selector":
        one = st.one_of(
            *(
                st.fixed_dictionaries({key: _plausible(key, binary, depth + 1)})
                for key in ("stream", "category", "event_type", "pattern")
            )
        )
        selector = st.one_of(one, st.just({"all": True}))
        conditions = st.lists(_plausible("condition", binary, depth + 1), min_size=1, max_size=2)
        with_payload = st.builds(lambda s, p: {**s, "payload": p}, selector, conditions)
        selector_fields = ("stream", "category", "event_type", "pattern", "all", "payload")
        return _mutated(st.one_of(selector, with_payload), selector_fields, binary)
    if name == "condition":
        tests: dict[str, st.SearchStrategy[Any]] = {
            "equals": _values(binary),
            "in": st.lists(_values(binary), min_size=1, max_size=3),
            "range": _plausible("range", binary, depth + 1),
            "exists": st.booleans(),
        }
        condition = st.one_of(
            *(
                st.fixed_dictionaries({"path": PLAUSIBLE["path"], key: test})
                for key, test in tests.items()
            )
        )
        return _mutated(condition, ("path", *tests), binary)
    if name in SUBSETS:
        fields = SUBSETS[name]
        optional = {field: _plausible(field, binary, depth + 1) for field in fields}
        return _mutated(st.fixed_dictionaries({}, optional=optional), fields, binary)
    if name in NESTED:
        nested = _object(NESTED[name], binary, depth + 1)
        if name in LISTS_OF_OBJECTS:
            return st.lists(nested, min_size=1, max_size=3)
        return st.one_of(PLAUSIBLE["after"], nested) if name == "after" else nested
    return PLAUSIBLE.get(name, _typed(name, binary))


def _object(fields: tuple[str, ...], binary: bool, depth: int = 0) -> st.SearchStrategy[Any]:
    """A request (or nested) object with every field valid-looking, then mutated."""
    fields = (*fields, "timeout_ms") if depth == 0 else fields
    base = st.fixed_dictionaries({name: _plausible(name, binary, depth) for name in fields})
    return _mutated(base, fields, binary)


def _requests(binary: bool) -> st.SearchStrategy[tuple[str, Any]]:
    """(operation, request value) pairs: shaped for the operation, or anything at all."""
    anything = _values(binary)
    return st.one_of(
        *(
            st.tuples(st.just(op), st.one_of(_object(fields, binary), anything))
            for op, fields in sorted(OPERATIONS.items())
        )
    )


def _json_text(value: Any) -> bytes:
    # Python's json writes NaN, Infinity and integers of any size: malformed for a strict
    # reader, which is the point.
    return json.dumps(value).encode()


MALFORMED_JSON = (
    b"",
    b" ",
    b"{",
    b"{not json",
    b'{"stream": "a"',
    b'{"stream": "\\ud800", "events": []}',
    b'{"stream": "\\udc00x"}',
    b'{"stream": "a", "stream": 1}',
    b'{"stream": "a\xff\xfeb"}',
    b"\xef\xbb\xbf{}",
    b'{"limit": 1e400}',
    b'{"limit": -0}',
    b'{"limit": 1' + b"0" * 400 + b"}",
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"null",
    b"true",
    b'"string"',
    b"0",
    b"[]",
)


MSGPACK_MAP_FIRST_BYTES = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}


@dataclass(frozen=True)
class Sent:
    """One request as sent, for the failure message."""

    subject: str
    body: bytes
    binary: bool
    """Sent with `Content-Type: application/msgpack`."""

    @property
    def answered_in_msgpack(self) -> bool:
        """The contract (docs/api.md): the header says msgpack, or there is none and the body
        starts as a msgpack map does."""
        return self.binary or (bool(self.body) and self.body[0] in MSGPACK_MAP_FIRST_BYTES)

    def __str__(self) -> str:
        codec = "msgpack" if self.binary else "no header"
        return f"{self.subject} ({codec}) {self.body[:300]!r}"


# ---- the stack and its seeded data -------------------------------------------------------


class Seeded:
    """What was stored before fuzzing, and how to read it back."""

    def __init__(self, streams: list[str], subscription: str, snapshot: dict[str, Any]) -> None:
        self.streams = streams
        self.subscription = subscription
        self.snapshot = snapshot
        self.events: list[dict[str, Any]] = []
        self.infos: dict[str, Any] = {}
        self.reads: dict[str, Any] = {}
        self.subscription_info: dict[str, Any] = {}
        self.snapshot_read: dict[str, Any] = {}
        self.pids: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Seeded({len(self.events)} events in {', '.join(self.streams)})"


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own, so a restart shows in its pid files."""
    running = start_stack(
        Path(tmp_path_factory.mktemp("fuzz")) / "stack", durability="fsync", env=STACK_ENV
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
async def fuzz_api(fuzz_stack: Stack) -> AsyncIterator[Api]:
    """JSON request-reply against the fuzzed stack."""
    api = await connect_api(fuzz_stack.url)
    yield api
    await api.nc.close()


def _pids(stack: Stack) -> dict[str, str]:
    """Every supervised process's pid file: a restart writes a new pid."""
    return {path.name: path.read_text() for path in (stack.data_dir / "run").glob("*.pid")}


async def _snapshot_of_store(api: Api, seeded: Seeded) -> dict[str, Any]:
    """Everything the seed wrote, read back."""
    streams = seeded.streams
    return {
        "events": (await api.ok("read_all", {"limit": SEEDED_EVENTS}))["events"],
        "infos": {s: await api.ok("stream_info", {"stream": s}) for s in streams},
        "reads": {s: await api.ok("read_stream", {"stream": s, "limit": 1000}) for s in streams},
    }


def _definition(info: dict[str, Any]) -> dict[str, Any]:
    """A subscription's settings, without what moves as events arrive."""
    moving = {"checkpoint", "last_position", "lag", "in_flight", "consumers"}
    return {k: v for k, v in info.items() if k not in moving}


@pytest.fixture(scope="module")
async def seeded(fuzz_stack: Stack, fuzz_api: Api) -> Seeded:
    """Streams (JSON and binary events, a transaction), a subscription and a snapshot."""
    tag = uuid.uuid4().hex[:8]
    streams = [f"seed{tag}-{i}" for i in range(3)]
    binary = base64.b64encode(bytes(range(256))).decode()
    await fuzz_api.ok(
        "append",
        {
            "stream": streams[0],
            "expected_version": "no_stream",
            "events": [
                {"type": "Created", "data": {"n": i, "s": "\u00e9\U0001f600"}, "metadata": {"m": i}}
                for i in range(5)
            ],
        },
    )
    await fuzz_api.ok(
        "append",
        {
            "stream": streams[1],
            "events": [
                {
                    "type": "Blob",
                    "event_id": str(uuid.uuid4()),
                    "data": binary,
                    "content_type": "application/octet-stream",
                }
            ],
        },
    )
    await fuzz_api.ok(
        "append_multi",
        {
            "appends": [
                {"stream": streams[2], "events": [{"type": "A", "data": [1, None, True]}]},
                {"stream": streams[0], "expected_version": 4, "events": [{"type": "B"}]},
            ]
        },
    )
    subscription = f"seed{tag}"
    await fuzz_api.ok(
        "subscription_create",
        {"subscription": subscription, "selector": {"category": f"seed{tag}"}},
    )
    snapshot = {"source_uuid": f"seed{tag}", "stream_uuid": streams[0], "version": 5}
    await fuzz_api.ok("snapshot_record", {**snapshot, "data": {"state": [1, 2, 3]}})
    state = Seeded(streams, subscription, snapshot)
    stored = await _snapshot_of_store(fuzz_api, state)
    state.events, state.infos, state.reads = stored["events"], stored["infos"], stored["reads"]
    assert len(state.events) == SEEDED_EVENTS, state.events
    state.snapshot_read = await fuzz_api.ok("snapshot_read", snapshot)
    state.subscription_info = _definition(
        await fuzz_api.ok("subscription_info", {"subscription": subscription})
    )
    state.pids = _pids(fuzz_stack)
    return state


async def _assert_untouched(stack: Stack, api: Api, seeded: Seeded) -> None:
    """No process restarted, and everything seeded reads back as it was."""
    assert stack.process.poll() is None, stack.log_tail()
    assert _pids(stack) == seeded.pids, f"a service restarted:\n{stack.log_tail(100)}"
    stored = await _snapshot_of_store(api, seeded)
    assert stored["events"] == seeded.events
    assert stored["infos"] == seeded.infos
    assert stored["reads"] == seeded.reads
    info = await api.ok("subscription_info", {"subscription": seeded.subscription})
    assert _definition(info) == seeded.subscription_info
    assert await api.ok("snapshot_read", seeded.snapshot) == seeded.snapshot_read


# ---- sending and judging -----------------------------------------------------------------


async def _exchange(api: Api, sent: Sent) -> Any:
    """Send one request and decode its reply in the request's encoding."""
    try:
        reply = await api.raw(
            sent.subject,
            sent.body,
            headers=MSGPACK if sent.binary else None,
            timeout=REPLY_TIMEOUT_S,
        )
    except nats.errors.Error as e:
        raise AssertionError(f"no reply ({e!r}) to {sent}") from e
    try:
        if sent.answered_in_msgpack:
            return msgspec.msgpack.decode(reply)
        return msgspec.json.decode(reply)
    except msgspec.DecodeError as e:
        raise AssertionError(f"undecodable reply {reply[:300]!r} to {sent}") from e


def _judge(operation: str | None, reply: Any, sent: Sent) -> None:
    """A typed error (contract code, message, the field it is about) or a result."""
    assert isinstance(reply, dict), f"reply {reply!r} to {sent} is not an object"
    if "error" not in reply:
        assert operation is not None, f"a result {reply!r} to {sent}"
        missing = RESULT_KEYS[operation] - reply.keys()
        assert not missing, f"result {reply!r} to {sent} lacks {missing}"
        return
    error = reply["error"]
    assert isinstance(error, dict), f"error {error!r} to {sent}"
    code = error.get("code")
    assert code in CONTRACT_CODES, f"error {error!r} to {sent}"
    message = error.get("message")
    assert isinstance(message, str) and message, f"error {error!r} to {sent}"
    details = error.get("details", {})
    assert isinstance(details, dict), f"error {error!r} to {sent}"
    if code in CODES_NAMING_A_FIELD:
        field = details.get("field")
        assert isinstance(field, str) and field, f"error {error!r} to {sent} names no field"


async def _check(api: Api, operation: str | None, sent: Sent) -> None:
    _judge(operation, await _exchange(api, sent), sent)


def _subject(operation: str, store: str = STORE) -> str:
    return f"esdb.api.{store}.{operation}"


# ---- the fuzz tests ----------------------------------------------------------------------


@FUZZ
@given(request=_requests(binary=False))
async def test_fuzzed_json_requests(
    fuzz_stack: Stack, fuzz_api: Api, seeded: Seeded, request: tuple[str, Any]
) -> None:
    operation, value = request
    await _check(fuzz_api, operation, Sent(_subject(operation), _json_text(value), False))


@FUZZ
@given(request=_requests(binary=True))
async def test_fuzzed_msgpack_requests(
    fuzz_stack: Stack, fuzz_api: Api, seeded: Seeded, request: tuple[str, Any]
) -> None:
    operation, value = request
    body = msgspec.msgpack.encode(value)
    await _check(fuzz_api, operation, Sent(_subject(operation), body, True))


def _corrupted(valid: bytes, at: int, cut: int, junk: bytes) -> bytes:
    at %= len(valid) + 1
    return valid[:at] + junk + valid[at + cut :]


_VALID_JSON = (
    b'{"stream": "fuzz-1", "events": [{"type": "T", "data": {"n": 1}}]}',
    b'{"stream": "fuzz-1", "from": "end", "direction": "backward", "limit": 3}',
    b'{"from_position": 1, "filter": {"stream_prefix": "fuzz", "event_type_regex": "^T"}}',
    b'{"subscription": "fz", "selector": {"category": "fuzz"}, "start": "end"}',
    b'{"selector": {"all": true, "payload": [{"path": "n", "range": {"gte": 1}}]}}',
    b'{"source_uuid": "s", "stream_uuid": "fuzz-1", "version": 1, "data": {"x": 1}}',
)
_VALID_MSGPACK = tuple(msgspec.msgpack.encode(json.loads(body)) for body in _VALID_JSON)


@FUZZ
@given(
    operation=st.sampled_from(sorted(OPERATIONS)),
    binary=st.booleans(),
    body=st.one_of(
        st.binary(max_size=200),
        st.sampled_from(MALFORMED_JSON),
        st.builds(
            _corrupted,
            st.sampled_from(_VALID_JSON + _VALID_MSGPACK),
            st.integers(0, 200),
            st.integers(0, 8),
            st.binary(max_size=8),
        ),
    ),
)
async def test_raw_and_malformed_bytes(
    fuzz_stack: Stack, fuzz_api: Api, seeded: Seeded, operation: str, binary: bool, body: bytes
) -> None:
    await _check(fuzz_api, operation, Sent(_subject(operation), body, binary))


_token = st.one_of(
    st.sampled_from(
        (*OPERATIONS, *SYSTEM_OPERATIONS, *UNKNOWN_OPERATIONS, "_sys", STORE, "nostore", "-x")
    ),
    st.text(alphabet="abcXYZ019_-$%#~", min_size=1, max_size=70),
)


@FUZZ
@given(
    tokens=st.lists(_token, min_size=1, max_size=4),
    encoded=st.booleans().flatmap(lambda binary: st.tuples(st.just(binary), _values(binary))),
)
async def test_odd_subjects(
    fuzz_stack: Stack, fuzz_api: Api, seeded: Seeded, tokens: list[str], encoded: tuple[bool, Any]
) -> None:
    binary, value = encoded
    subject = ".".join(["esdb", "api", *tokens])
    body = msgspec.msgpack.encode(value) if binary else _json_text(value)
    known = len(tokens) == 2 and (
        (tokens[0] == STORE and tokens[1] in OPERATIONS)
        or (tokens[0] == "_sys" and tokens[1] in SYSTEM_OPERATIONS)
    )
    await _check(fuzz_api, tokens[1] if known else None, Sent(subject, body, binary))


# ---- every field of a valid request, replaced by each hostile value ----------------------

VALID: dict[str, dict[str, Any]] = {
    "append": {
        "stream": "sweep-1",
        "expected_version": "any",
        "events": [
            {"type": "T", "data": {"n": 1}, "metadata": {}, "content_type": "application/json"}
        ],
    },
    "append_multi": {
        "appends": [{"stream": "sweep-2", "expected_version": "any", "events": [{"type": "T"}]}]
    },
    "read_stream": {
        "stream": "sweep-1",
        "from": "start",
        "direction": "forward",
        "limit": 5,
        "min_position": 1,
    },
    "read_all": {
        "from_position": "start",
        "direction": "backward",
        "limit": 5,
        "filter": {
            "event_types": ["T"],
            "event_type_prefix": "T",
            "stream_prefix": "sweep",
            "category": "sweep",
            "event_type_regex": "^T",
            "stream_regex": "^s",
        },
    },
    "list_streams": {"after": "a", "limit": 5},
    "stream_info": {"stream": "sweep-1"},
    "set_stream_metadata": {
        "stream": "sweep-3",
        "expected_version": "any",
        "metadata": {"max_count": 5, "max_age": 60, "truncate_before": 0, "note": "n"},
    },
    "delete_stream": {"stream": "sweep-4", "expected_version": "any"},
    "tombstone_stream": {"stream": "sweep-5", "expected_version": "any"},
    "subscription_create": {
        "subscription": "sweep",
        "selector": {"category": "sweep", "payload": [{"path": "n", "range": {"gte": 1}}]},
        "start": "end",
        "message_timeout_ms": 1000,
        "max_retries": 1,
        "max_in_flight": 1,
    },
    "subscription_delete": {"subscription": "nosuch"},
    "subscription_list": {},
    "subscription_info": {"subscription": "sweep"},
    "subscription_parked": {"subscription": "sweep", "after": 0, "limit": 5},
    "ack": {"subscription": "sweep", "positions": [1, 2], "consumer": "c"},
    "nack": {
        "subscription": "sweep",
        "positions": [1],
        "action": "retry",
        "reason": "r",
        "consumer": "c",
    },
    "replay_parked": {"subscription": "sweep"},
    "watch": {
        "selector": {"stream": "sweep-1", "payload": [{"path": ["n", 0], "in": [1, "a"]}]},
        "watch": "w",
        "after": 0,
        "ttl_ms": 1000,
    },
    "snapshot_record": {
        "source_uuid": "sweep",
        "stream_uuid": "sweep-1",
        "version": 1,
        "data": {"s": 1},
        "metadata": {"m": 1},
        "content_type": "application/json",
        "keep_last": 2,
    },
    "snapshot_read": {"source_uuid": "sweep", "stream_uuid": "sweep-1", "version": "latest"},
    "snapshot_delete": {"source_uuid": "sweep", "stream_uuid": "sweep-1", "version": 0},
    "snapshot_list": {
        "source_uuid": "sweep",
        "after": {"source_uuid": "sweep", "stream_uuid": "a", "version": 0},
        "limit": 5,
    },
}
VALID["scavenge"] = {}
VALID["dcb_append"] = {
    "events": [{"type": "T", "data": {"n": 1}, "tags": ["fuzz-1"]}],
    "condition": {"fail_if_events_match": {"items": [{"tags": ["fuzz-none"]}]}},
}
VALID["dcb_read"] = {"query": {"items": [{"types": ["T"], "tags": ["fuzz-1"]}]}, "limit": 5}
assert VALID.keys() == OPERATIONS.keys()
for _request in VALID.values():
    _request["timeout_ms"] = 2000

HOSTILE: tuple[Any, ...] = (
    2**64 - 1,
    2**63,
    2**63 - 1,
    -(2**63),
    -1,
    0,
    1.5,
    "",
    "x" * 600,
    "a\x00b",
    "$x",
    "\u202e",
    None,
    True,
    [],
    {},
    [{}],
)
# Integers msgpack cannot carry, and values JSON cannot.
HOSTILE_JSON = (2**64, -(2**63) - 1, 10**30, {"a": [{"b": 2**64}]})
HOSTILE_MSGPACK = (
    b"\xff\x00",
    msgspec.msgpack.Ext(5, b"x"),
    [msgspec.msgpack.Ext(-1, b"")],
    {1: 2, 2.5: 3},
    {b"k": 1},
    {"a": {(1, 2): 3}},
    {"a": {None: 3}},
)


def _leaves(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """The path of every leaf and every container below the top of a request."""
    children: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    paths = [path] if path else []
    for key, child in children:
        paths += _leaves(child, (*path, key))
    return paths


def _replaced(value: Any, path: tuple[str | int, ...], new: Any) -> Any:
    if not path:
        return new
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


def _sweep(binary: bool) -> list[tuple[str | None, Sent]]:
    hostile = HOSTILE + (HOSTILE_MSGPACK if binary else HOSTILE_JSON)
    sweep: list[tuple[str | None, Sent]] = []
    for operation, valid in VALID.items():
        for path in _leaves(valid):
            for new in hostile:
                request = _replaced(valid, path, new)
                body = msgspec.msgpack.encode(request) if binary else _json_text(request)
                sweep.append((operation, Sent(_subject(operation), body, binary)))
    return sweep


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
async def test_every_field_of_a_valid_request_replaced_by_hostile_values(
    fuzz_stack: Stack, fuzz_api: Api, seeded: Seeded, binary: bool
) -> None:
    for operation, valid in VALID.items():
        body = msgspec.msgpack.encode(valid) if binary else _json_text(valid)
        await _check(fuzz_api, operation, Sent(_subject(operation), body, binary))
    await _check_all(fuzz_api, _sweep(binary))


MALFORMED_MSGPACK = (
    b"",
    b"\xc0",
    b"\x80",
    b"\xc1",
    b"\x81\xa6stream",
    b"\x81\xa6stream\xa3\xed\xa0\x80",
    b"\x81\xa6stream\xa2\xff\xfe",
    b"\x81\xa6stream\xdb\xff\xff\xff\xff",
    b"\x91" * 5000,
    b"\x81\xa1a" * 3000 + b"\x01",
    b"\xc7\x01\x05x",
)


async def _check_all(api: Api, checks: list[tuple[str | None, Sent]]) -> None:
    for start in range(0, len(checks), SWEEP_CONCURRENCY):
        batch = checks[start : start + SWEEP_CONCURRENCY]
        await asyncio.gather(*(_check(api, operation, sent) for operation, sent in batch))


async def test_every_operation_answers_malformed_bodies(
    fuzz_stack: Stack, fuzz_api: Api, seeded: Seeded
) -> None:
    subjects: list[tuple[str | None, str]] = [(op, _subject(op)) for op in OPERATIONS]
    subjects += [(op, _subject(op, "_sys")) for op in SYSTEM_OPERATIONS]
    subjects += [(None, _subject(op)) for op in UNKNOWN_OPERATIONS]
    checks: list[tuple[str | None, Sent]] = []
    for operation, subject in subjects:
        checks += [(operation, Sent(subject, body, False)) for body in MALFORMED_JSON]
        checks += [(operation, Sent(subject, body, True)) for body in MALFORMED_MSGPACK]
    await _check_all(fuzz_api, checks)


async def _assert_all_readable(api: Api, binary: bool) -> None:
    """Whatever the fuzz stored reads back as results in either encoding: no stored value
    makes a later reply fail."""
    reads: list[tuple[str | None, Sent]] = []

    def read(operation: str, request: dict[str, Any]) -> None:
        body = msgspec.msgpack.encode(request) if binary else _json_text(request)
        reads.append((operation, Sent(_subject(operation), body, binary)))

    after: str | None = None
    while True:
        page = await api.ok("list_streams", {"after": after, "limit": 1000})
        for summary in page["streams"]:
            read("stream_info", {"stream": summary["stream"]})
            read("read_stream", {"stream": summary["stream"], "limit": 1000})
        after = page["next"]
        if after is None:
            break
    read("read_all", {"from_position": "start", "limit": 10_000})
    read("subscription_list", {})
    read("snapshot_list", {"limit": 1000})
    for operation, sent in reads:
        reply = await _exchange(api, sent)
        _judge(operation, reply, sent)
        failed = reply.get("error", {}).get("code") not in (
            None,
            "stream_deleted",
            "stream_not_found",
        )
        assert not failed, f"{sent} answered {reply}"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
async def test_everything_stored_reads_back(
    fuzz_stack: Stack, fuzz_api: Api, seeded: Seeded, binary: bool
) -> None:
    """Runs after the fuzz tests above (file order): what they stored is readable."""
    await _assert_all_readable(fuzz_api, binary)


async def test_nothing_stored_changed_and_nothing_restarted(
    fuzz_stack: Stack, fuzz_api: Api, seeded: Seeded
) -> None:
    """Runs after the fuzz tests above (file order); each of them may only add data."""
    await _assert_untouched(fuzz_stack, fuzz_api, seeded)
