"""`ip netns exec <ns> python -m tests.system.partition_probe --url URL`: a client inside a
partitioned node's namespace, where that node's nats-server is still reachable.

It prints `connected`, then on a `go` line (stdin) keeps trying appends through that server,
both straight to the writers' command subject and through the public API, and polls every
node status it can hear, printing `role <time> <node> <role>` whenever a node's role changes. On a
`stop` line it waits for the requests in flight and prints `report <json>`: every attempt with
its event id and outcome, and every role heard."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NatsClient

from esdb.contracts.commands import (
    EXPECT_ANY,
    NewEvent,
    StreamAppend,
    WriteBatch,
    WriteBatchReply,
    WriteRequest,
)
from esdb.contracts.subjects import NODE_STATUS, WRITER_COMMANDS, api_subject
from esdb.shared.nats_connection import gather_replies

ATTEMPT_EVERY_S = 0.25
# Longer than the writer's log publish timeout (5 s), so the writer's own answer is seen.
WRITER_TIMEOUT_S = 7.0
API_TIMEOUT_S = 3.0
STATUS_WINDOW_S = 0.25
ACKED = "acked"

_encoder = msgspec.msgpack.Encoder()
_reply_decoder = msgspec.msgpack.Decoder(WriteBatchReply)


@dataclass
class Attempt:
    """One append the probe sent and what came back."""

    via: str
    event_id: str
    sent: float
    done: float = 0.0
    outcome: str = "pending"


@dataclass
class Report:
    """What the probe saw; times are `time.monotonic()`, which every namespace shares."""

    attempts: list[Attempt] = field(default_factory=list)
    roles: list[tuple[float, str, str]] = field(default_factory=list)


def _outcome_of(error: BaseException) -> str:
    if isinstance(error, nats.errors.NoRespondersError):
        return "no_responders"
    if isinstance(error, nats.errors.TimeoutError | TimeoutError):
        return "timeout"
    return type(error).__name__


class Probe:
    """Appends and status polls through one nats-server, recorded in a `Report`."""

    def __init__(self, nc: NatsClient, store: str) -> None:
        self._nc = nc
        self._store = store
        self._stream = f"partition-probe-{uuid.uuid4().hex[:8]}"
        self.report = Report()
        self._roles: dict[str, str] = {}

    async def write_direct(self) -> None:
        """One append as a `WriteBatch` to whichever writer serves the command subject."""
        event_id = uuid.uuid4()
        event = NewEvent(event_id.bytes, "Probe", b'{"probe":true}', b"", "application/json")
        request = WriteRequest(self._store, [StreamAppend(self._stream, EXPECT_ANY, [event])])
        attempt = self._attempt("writer", event_id)
        try:
            reply = await self._nc.request(
                WRITER_COMMANDS, _encoder.encode(WriteBatch([request])), timeout=WRITER_TIMEOUT_S
            )
            outcome = _reply_decoder.decode(reply.data).outcomes[0]
            attempt.outcome = ACKED if outcome.error is None else outcome.error.code
        except Exception as e:
            attempt.outcome = _outcome_of(e)
        attempt.done = time.monotonic()

    async def write_api(self) -> None:
        """One append through the public API (any gateway this server can reach)."""
        event_id = uuid.uuid4()
        body = {
            "stream": self._stream,
            "events": [{"event_id": str(event_id), "type": "Probe", "data": {"probe": True}}],
        }
        attempt = self._attempt("api", event_id)
        try:
            reply = await self._nc.request(
                api_subject(self._store, "append"), json.dumps(body).encode(), timeout=API_TIMEOUT_S
            )
            error = json.loads(reply.data).get("error")
            attempt.outcome = ACKED if error is None else str(error.get("code"))
        except Exception as e:
            attempt.outcome = _outcome_of(e)
        attempt.done = time.monotonic()

    async def poll_roles(self) -> None:
        """Record the role of every writer that answers a status request."""
        for reply in await gather_replies(self._nc, NODE_STATUS, b"", STATUS_WINDOW_S):
            status: dict[str, Any] = msgspec.msgpack.decode(reply)
            heard, node, role = time.monotonic(), str(status["node_id"]), str(status["role"])
            self.report.roles.append((heard, node, role))
            if self._roles.get(node) != role:
                self._roles[node] = role
                print(f"role {heard} {node} {role}", flush=True)

    def _attempt(self, via: str, event_id: uuid.UUID) -> Attempt:
        attempt = Attempt(via=via, event_id=event_id.hex, sent=time.monotonic())
        self.report.attempts.append(attempt)
        return attempt


async def _read_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def run(url: str, store: str) -> Report:
    """Connect, announce it, probe between `go` and `stop`, and return the report."""
    # One server only, and no reconnecting elsewhere: the probe stays on the isolated node.
    nc = await nats.connect([url], max_reconnect_attempts=0, connect_timeout=5)
    probe = Probe(nc, store)
    print("connected", flush=True)
    if (await _read_line()).strip() != "go":
        await nc.close()
        return probe.report
    stop = asyncio.create_task(_read_line())
    in_flight: set[asyncio.Task[None]] = set()
    while not stop.done():
        for coro in (probe.write_direct(), probe.write_api()):
            task = asyncio.create_task(coro)
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await probe.poll_roles()
        await asyncio.wait({stop}, timeout=ATTEMPT_EVERY_S)
    if in_flight:
        await asyncio.wait(in_flight)
    await nc.close()
    return probe.report


def main() -> None:
    """Parse the arguments, probe, print the report as one line."""
    parser = argparse.ArgumentParser(prog="python -m tests.system.partition_probe")
    parser.add_argument("--url", required=True)
    parser.add_argument("--store", default="default")
    args = parser.parse_args()
    report = asyncio.run(run(args.url, args.store))
    print(f"report {json.dumps(asdict(report))}", flush=True)


if __name__ == "__main__":
    main()
