"""Several stores: created, configured, listed and removed through the log, each with its own
data, over JSON and through the Python client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from esdb.client import AlreadyExists, Client, InvalidRequest, NewEvent, NotFound, StreamNotFound
from esdb.contracts.api import StoreConfig
from tests.stack import Api, Stack, wait_until


def _name() -> str:
    return f"st{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with Client.connect(stack.url) as connected:
        yield connected


async def test_a_store_is_created_used_configured_and_removed(client: Client, stack: Stack) -> None:
    name = _name()
    info = await client.create_store(name, description="orders", tags=["team-a"])
    assert (info.store, info.config) == (name, StoreConfig(description="orders", tags=["team-a"]))
    with pytest.raises(AlreadyExists):
        await client.create_store(name)
    assert name in [s.store for s in await client.list_stores()]

    stream = f"{name}-1"  # a stream no other test writes to the default store
    async with Client.connect(stack.url, store=name) as other:
        appended = await other.append(stream, [NewEvent("Placed", {"n": 1})])
        assert appended.first_position == 1  # positions are per store
        assert [e.json() for e in (await other.read_stream(stream)).events] == [{"n": 1}]
    with pytest.raises(StreamNotFound):  # nothing of one store is visible from another
        await client.read_stream(stream)

    async def applied() -> bool:
        return (await client.store_status(name)).last_position == 1

    await wait_until(applied, timeout=10, what="the store's status to show its event")
    status = await client.store_status(name)
    assert status.size_bytes and status.size_bytes > 0 and status.applied_sequence

    new = StoreConfig(description="orders, v2", tags=[])
    assert await client.store_config(name, new) == new
    assert await client.store_config(name) == new

    await client.remove_store(name)
    assert name not in [s.store for s in await client.list_stores()]
    for call in (client.store_status(name), client.remove_store(name)):
        with pytest.raises(NotFound):
            await call
    async with Client.connect(stack.url, store=name) as gone:
        with pytest.raises(NotFound) as raised:
            await gone.append(stream, [NewEvent("Placed", {})])
        assert raised.value.details["field"] == "store"
        with pytest.raises(NotFound):
            await gone.read_stream(stream)

    await client.create_store(name)  # the same name again starts empty
    async with Client.connect(stack.url, store=name) as again:
        with pytest.raises(StreamNotFound):
            await again.read_stream(stream)
        assert (await again.append(stream, [NewEvent("Placed", {})])).first_position == 1


async def test_the_default_store_cannot_be_removed(client: Client) -> None:
    with pytest.raises(InvalidRequest) as raised:
        await client.remove_store("default")
    assert raised.value.details["field"] == "store"


@pytest.mark.parametrize(
    ("operation", "body", "code", "field"),
    [
        ("store_create", {"store": "_hidden"}, "invalid_request", "store"),
        ("store_create", {"store": "a.b"}, "invalid_request", "store"),
        ("store_create", {}, "invalid_request", "store"),
        ("store_create", {"store": "ok", "config": {"tags": [""]}}, "invalid_request",
         "config.tags"),
        ("store_status", {"store": "nope-none"}, "not_found", "store"),
        ("store_remove", {"store": "nope-none"}, "not_found", "store"),
        ("store_config", {"store": "nope-none"}, "not_found", "store"),
    ],
)  # fmt: skip
async def test_store_errors_over_json(
    api: Api, operation: str, body: dict[str, object], code: str, field: str
) -> None:
    error = await api.error(operation, body, store="_sys")
    assert (error["code"], error["details"]["field"]) == (code, field)


async def test_store_operations_over_json(api: Api) -> None:
    name = _name()
    created = await api.ok("store_create", {"store": name}, store="_sys")
    assert created == {"store": name, "config": {}}
    listed = await api.ok("store_list", {}, store="_sys")
    assert {"store": name, "config": {}} in [
        {k: v for k, v in s.items() if k in ("store", "config")} for s in listed["stores"]
    ]
    assert await api.ok("store_remove", {"store": name}, store="_sys") == {
        "store": name,
        "removed": True,
    }
