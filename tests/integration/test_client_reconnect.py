"""Reconnecting across NATS servers: two clustered nats-servers and a stand-in gateway on one
of them; the server the client is connected to is killed, and its next request is answered
through the other."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.msg import Msg

from esdb.client import Client
from esdb.services.supervisor.nats_server import free_port_block, nats_server_binary, wait_for_port

HOST = "127.0.0.1"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[int, subprocess.Popen[bytes]]]:
    """Two clustered nats-servers (no JetStream), by client port."""
    port, route = free_port_block(2), free_port_block(2)
    running: dict[int, subprocess.Popen[bytes]] = {}
    for n in range(2):
        config = tmp_path / f"server{n}.conf"
        config.write_text(
            f"listen: {HOST}:{port + n}\n"
            "cluster {\n"
            "  name: reconnect\n"
            f"  listen: {HOST}:{route + n}\n"
            f"  routes: [nats-route://{HOST}:{route + 1 - n}]\n"
            "}\n"
        )
        running[port + n] = subprocess.Popen(
            [nats_server_binary(), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    yield running
    for process in running.values():
        process.kill()
        process.wait()


@pytest.fixture
async def client(servers: dict[int, subprocess.Popen[bytes]]) -> AsyncIterator[Client]:
    for port in servers:
        await wait_for_port(port)
    hosts = ",".join(f"{HOST}:{port}" for port in servers)
    async with Client.connect(f"esdb://{hosts}?timeout=1&retry_deadline=20") as connected:
        yield connected


PAGE = msgspec.msgpack.encode({"events": [], "next": None, "last_version": 41})


async def test_a_request_after_the_server_dies_goes_through_another(
    servers: dict[int, subprocess.Popen[bytes]], client: Client
) -> None:
    connected_url = client._connection.nc.connected_url
    assert connected_url is not None
    mine = connected_url.port
    assert isinstance(mine, int) and mine in servers
    other = next(port for port in servers if port != mine)

    async def answer(msg: Msg) -> None:
        await msg.respond(PAGE)

    gateway = await nats.connect(f"nats://{HOST}:{other}")
    try:
        await gateway.subscribe("esdb.api.default.read_stream", cb=answer)
        await gateway.flush()
        # Retried while the subscription travels the route to the client's server.
        assert (await client.read_stream("any")).last_version == 41

        servers[mine].send_signal(signal.SIGKILL)
        servers[mine].wait()
        async with asyncio.timeout(20):
            assert (await client.read_stream("any")).last_version == 41
        connected_url = client._connection.nc.connected_url
        assert connected_url is not None
        assert connected_url.port == other
    finally:
        await gateway.close()


async def test_a_request_in_flight_when_its_server_stops_is_sent_again_through_another(
    servers: dict[int, subprocess.Popen[bytes]],
) -> None:
    """Its reply could only come back on the dropped connection: it is failed at once and
    retried on the new one, not left to wait out its timeout (a rolling restart)."""
    for port in servers:
        await wait_for_port(port)
    hosts = ",".join(f"{HOST}:{port}" for port in servers)
    async with Client.connect(f"esdb://{hosts}?timeout=60&retry_deadline=60") as client:
        connected_url = client._connection.nc.connected_url
        assert connected_url is not None
        mine = connected_url.port
        assert isinstance(mine, int) and mine in servers
        other = next(port for port in servers if port != mine)
        heard = asyncio.Event()

        async def answer_the_second(msg: Msg) -> None:
            if heard.is_set():
                await msg.respond(PAGE)
            heard.set()  # the first request is heard and left unanswered

        gateway = await nats.connect(f"nats://{HOST}:{other}")
        try:
            await gateway.subscribe("esdb.api.default.read_stream", cb=answer_the_second)
            await gateway.flush()
            reading = asyncio.ensure_future(client.read_stream("any"))
            await asyncio.wait_for(heard.wait(), 10)
            servers[mine].send_signal(signal.SIGTERM)
            # A third of the request's own 60 s timeout: it must not wait that out.
            assert (await asyncio.wait_for(reading, 20)).last_version == 41
        finally:
            await gateway.close()
