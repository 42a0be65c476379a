"""The AsyncAPI document: current with the contracts, complete, self-consistent, and what
`esdb api-docs` prints and serves."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from esdb.cli.api_docs_command import asyncapi_yaml, make_server
from esdb.cli.main import main
from esdb.contracts.asyncapi import OPERATIONS, asyncapi_document, asyncapi_json, contract_types
from esdb.contracts.errors import ErrorCode
from esdb.contracts.subjects import SYSTEM_STORE, Op, api_subject
from esdb.contracts.subscriptions import ATTEMPT_HEADER, delivery_subject
from esdb.contracts.topics import EVENT_ID_HEADER, POSITION_HEADER, event_subject
from esdb.contracts.watches import watch_subject

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document()


def test_the_committed_document_is_current() -> None:
    assert asyncapi_json() == COMMITTED.read_text(encoding="utf-8"), (
        "docs/asyncapi.json is stale: regenerate it with `esdb api-docs > docs/asyncapi.json`"
    )


def test_every_public_operation_has_a_request_reply_channel(document: dict[str, Any]) -> None:
    names = {value for key, value in vars(Op).items() if key.isupper()}
    assert sorted(op.name for op in OPERATIONS) == sorted(names)
    for op in OPERATIONS:
        store = SYSTEM_STORE if op.system else "{store}"
        channel = document["channels"][op.name]
        assert channel["address"] == api_subject(store, op.name)
        operation = document["operations"][op.name]
        assert operation["action"] == "receive"
        reply_channel = operation["reply"]["channel"]["$ref"]
        assert resolve(document, reply_channel)["address"] is None  # the requester's inbox
        pointers = [m["$ref"] for m in operation["reply"]["messages"]]
        assert all(p.startswith(f"{reply_channel}/messages/") for p in pointers)
        replies = [resolve(document, p) for p in pointers]
        assert [m["payload"] for m in replies] == [
            ref(op.result.__name__),
            ref("ErrorReply"),
        ]
        request = resolve(document, operation["messages"][0]["$ref"])
        if op.request is not None:
            assert request["payload"] == ref(op.request.__name__)


def test_the_error_reply_carries_every_error_code(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["ErrorReply"]["properties"]["error"] == ref("ErrorBody")
    assert schemas["ErrorBody"]["required"] == ["code", "message"]
    assert schemas["ErrorBody"]["properties"]["code"] == ref("ErrorCode")
    assert sorted(schemas["ErrorCode"]["enum"]) == sorted(code.value for code in ErrorCode)


def test_published_subjects_match_the_contracts(document: dict[str, Any]) -> None:
    channels = document["channels"]
    live = channels["live_events"]["address"].format(
        store="s", category="order", stream="order-1", event_type="Placed"
    )
    assert live == event_subject("s", "order-1", "Placed")
    deliveries = channels["subscription_delivery"]["address"].format(store="s", subscription="b")
    assert deliveries == delivery_subject("s", "b")
    watch = channels["watch_events"]["address"].format(store="s", watch="w1")
    assert watch == watch_subject("s", "w1")
    messages = document["components"]["messages"]
    assert messages["Delivery"]["headers"]["required"] == [
        POSITION_HEADER,
        EVENT_ID_HEADER,
        ATTEMPT_HEADER,
    ]
    for name in ("LiveEvent", "WatchEvent"):
        assert messages[name]["headers"]["required"] == [POSITION_HEADER, EVENT_ID_HEADER]
        assert messages[name]["payload"] == ref("EventOut")
    receipt = document["operations"]["deliver_to_subscription"]["reply"]["messages"][0]
    assert resolve(document, receipt["$ref"])["payload"] == ref("Receipt")


def test_every_channel_parameter_is_declared(document: dict[str, Any]) -> None:
    for channel in document["channels"].values():
        address = channel["address"]
        if address is None:
            continue
        named = {part[1:-1] for part in address.split(".") if part.startswith("{")}
        assert named == set(channel.get("parameters", {})), address


def test_every_ref_resolves(document: dict[str, Any]) -> None:
    refs = list(all_refs(document))
    assert len(refs) > 100
    for pointer in refs:
        resolve(document, pointer)


def test_the_schemas_are_the_contract_structs(document: dict[str, Any]) -> None:
    """Every struct reachable from the operations has a schema of its own name with exactly
    its wire fields (so no two structs share a name, and the schema twins msgspec needs for
    `Raw` defaults keep every field); an array-like struct has one item per field."""
    schemas = document["components"]["schemas"]
    structs = reachable_structs(msgspec.inspect.multi_type_info(contract_types()))
    assert set(structs) <= set(schemas)
    for name, info in structs.items():
        schema = schemas[name]
        if info.array_like:  # `CompactEvent`: its fields by place
            assert len(schema["prefixItems"]) == len(info.fields), name
            assert schema["minItems"] == len([f for f in info.fields if f.required]), name
            continue
        assert list(schema["properties"]) == [f.encode_name for f in info.fields], name
        assert schema["required"] == [f.encode_name for f in info.fields if f.required], name


def test_esdb_api_docs_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api-docs"]) == 0
    assert capsys.readouterr().out == COMMITTED.read_text(encoding="utf-8")


def test_esdb_api_docs_prints_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api-docs", "--format", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == json.loads(asyncapi_json())


def test_the_server_serves_the_document_and_a_page() -> None:
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/asyncapi.json", timeout=5) as reply:
            assert reply.headers["Content-Type"] == "application/json"
            assert reply.read().decode() == asyncapi_json()
        with urllib.request.urlopen(f"{base}/asyncapi.yaml", timeout=5) as reply:
            assert reply.read().decode() == asyncapi_yaml()
        with urllib.request.urlopen(f"{base}/", timeout=5) as reply:
            page = reply.read().decode()
        assert 'schemaUrl="asyncapi.json"' in page
        assert '<a href="asyncapi.json">' in page
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/nothing", timeout=5)
        assert missing.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def ref(schema: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{schema}"}


def resolve(document: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = document
    for token in pointer[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and token in node, f"{pointer} does not resolve"
        node = node[token]
    if isinstance(node, dict) and set(node) == {"$ref"}:
        return resolve(document, node["$ref"])  # a channel's message refers to a component
    return node


def all_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from all_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from all_refs(item)


def reachable_structs(types: Any) -> dict[str, msgspec.inspect.StructType]:
    found: dict[str, msgspec.inspect.StructType] = {}

    def walk(info: Any) -> None:
        if isinstance(info, msgspec.inspect.StructType):
            name = info.cls.__name__
            if name in found:
                assert found[name].cls is info.cls, f"two structs named {name}"
                return
            found[name] = info
            for field in info.fields:
                walk(field.type)
        elif isinstance(info, msgspec.inspect.Type):
            for value in msgspec.structs.asdict(info).values():
                for item in value if isinstance(value, tuple) else (value,):
                    walk(item)

    for info in types:
        walk(info)
    return found
