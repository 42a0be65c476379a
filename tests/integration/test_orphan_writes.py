"""Writes that no leader answered (it died with them, or none led) get `timeout` from the
gateway's orphan watch as soon as a leader announces that it serves; on a real nats-server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import nats
import nats.errors
import pytest

from esdb.contracts.api import MSGPACK_CONTENT_TYPE
from esdb.contracts.subjects import WRITER_SERVING, write_subject
from esdb.services.gateway.orphans import OrphanWatch
from esdb.services.supervisor.nats_server import free_port, nats_server_binary, wait_for_port
from esdb.shared.settings import Settings
from tests.stack import wait_until


@pytest.fixture
async def url(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_for_port(port)
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()


async def test_waiting_writes_get_timeout_when_a_leader_starts_serving(url: str) -> None:
    gateway = await nats.connect(url)
    client = await nats.connect(url)
    watch = OrphanWatch(gateway, Settings(timeout_ms=5000))
    await watch.start()
    await gateway.flush()
    subject = write_subject("default", "append")

    lost = asyncio.ensure_future(client.request(subject, b'{"stream": "a-1"}', timeout=10))
    expired = asyncio.ensure_future(
        client.request(
            subject,
            msgspec.msgpack.encode({"stream": "a-2", "timeout_ms": 1}),
            headers={"Content-Type": MSGPACK_CONTENT_TYPE},
            timeout=2,
        )
    )

    async def both_seen() -> bool:
        return watch.waiting == 2

    await wait_until(both_seen, timeout=5, what="the watch to see both writes")
    sent = time.monotonic()

    async def deadline_passed() -> bool:
        return time.monotonic() > sent + 0.01  # the 1 ms write's deadline, not a pause

    await wait_until(deadline_passed, timeout=1, what="the short deadline to pass")
    await client.publish(WRITER_SERVING, b"node9")

    reply = await lost
    error = json.loads(reply.data)["error"]
    assert error["code"] == "timeout"
    assert "retry with the same ids" in error["message"]
    # A write whose own deadline had passed is not answered: its client stopped waiting.
    with pytest.raises(nats.errors.TimeoutError):
        await expired
    assert watch.waiting == 0

    # Writes that arrive after the announcement wait for the next one.
    later = asyncio.ensure_future(client.request(subject, b"{}", timeout=10))

    async def later_seen() -> bool:
        return watch.waiting == 1

    await wait_until(later_seen, timeout=5, what="the watch to see the later write")
    assert not later.done()
    await client.publish(WRITER_SERVING, b"node10")
    assert json.loads((await later).data)["error"]["code"] == "timeout"
    await client.close()
    await gateway.close()
