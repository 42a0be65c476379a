"""Reads go from the servers straight to a reader: they are answered while the gateway is
frozen, in both codecs, with bad ones refused by the reader as the gateway would."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator

import msgspec
import nats

from esdb.client import Client, NewEvent
from esdb.client.events import compact_event
from tests.stack import Stack


@contextlib.contextmanager
def frozen_gateway(stack: Stack) -> Iterator[None]:
    """The stack's gateway stopped (SIGSTOP) until the block ends."""
    pid = stack.pid("gateway")
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_reads_are_answered_without_the_gateway(stack: Stack) -> None:
    async with Client.connect(stack.url) as client:
        written = await client.append(
            "direct-1", [NewEvent(type="Read", data={"n": n}) for n in range(3)]
        )
    with frozen_gateway(stack):
        async with Client.connect(f"{stack.url}?timeout=5&max_retries=0") as client:
            read = await client.read_stream("direct-1", min_position=written.last_position)
            assert [json.loads(event.data) for event in read.events] == [{"n": n} for n in range(3)]
            info = await client.stream_info("direct-1")
            assert info.version == 2
            page = await client.read_all(
                from_position=written.last_position, min_position=written.last_position
            )
            assert [event.position for event in page.events] == [written.last_position]
            compact = await client.read_all_compact(
                from_position=written.first_position, min_position=written.last_position
            )
            assert [compact_event(event) for event in page.events] == compact.records[-1:]
            assert [record.stream_id for record in compact.records[-3:]] == ["direct-1"] * 3
            listed = await client.list_streams(after="direct-0", limit=1)
            assert [entry.stream for entry in listed.streams] == ["direct-1"]

        nc = await nats.connect(stack.url)
        try:
            raw = await nc.request(
                "esdb.api.default.read_stream",
                json.dumps({"stream": "direct-1"}).encode(),
                timeout=5,
            )
            assert [e["data"] for e in json.loads(raw.data)["events"]] == [
                {"n": 0},
                {"n": 1},
                {"n": 2},
            ]
            bad = await nc.request(
                "esdb.api.default.read_stream",
                msgspec.msgpack.encode({"stream": "direct-1", "limit": -1}),
                timeout=5,
                headers={"Content-Type": "application/msgpack"},
            )
            error = msgspec.msgpack.decode(bad.data)["error"]
            assert (error["code"], error["details"]["field"]) == ("invalid_request", "limit")
            system = await nc.request(
                "esdb.api._sys.read_stream", json.dumps({"stream": "x"}).encode(), timeout=5
            )
            assert json.loads(system.data)["error"]["code"] == "invalid_request"
            # Published straight to the readers' subject, past the mapping: still answered.
            unknown = await nc.request("esdb.read.default.nope", b"{}", timeout=5)
            error = json.loads(unknown.data)["error"]
            assert (error["code"], error["details"]["field"]) == ("invalid_request", "operation")
        finally:
            await nc.close()
