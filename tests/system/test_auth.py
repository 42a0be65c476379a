"""`esdb up --auth` and TLS: tenants confined to their stores, no way in without a credential,
internal subjects and management out of a tenant's reach, and TLS end to end."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.errors
import pytest
import trustme

from esdb.client import Client, NewEvent, SyncClient, Unauthorized
from esdb.services.supervisor.nats_server import free_port_block
from tests.stack import Api, Stack, launch_stack, wait_until
from tests.system.cluster import wait_converged

DEADLINE_S = 5.0


def _up(data_dir: Path, port: int, *extra: str) -> Stack:
    args = [sys.executable, "-m", "esdb.cli.main", "up", "--data-dir", str(data_dir)]
    args += ["--nats-port", str(port), "--auth", *extra]
    scheme = "tls" if "--tls-cert" in extra else "nats"
    return launch_stack(args, url=f"{scheme}://127.0.0.1:{port}", data_dir=data_dir, what="up")


def _user(stack: Stack, name: str, *options: str) -> str:
    """`esdb user add`: the new user's connection URL."""
    done = subprocess.run(
        [sys.executable, "-m", "esdb.cli.main", "user", "add", name, *options,
         "--data-dir", str(stack.data_dir), "--url", stack.url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def _admin_url(stack: Stack) -> str:
    credentials = (stack.data_dir / "auth" / "admin.creds").read_text().strip()
    return stack.url.replace("://", f"://{credentials}@", 1)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = _up(tmp_path_factory.mktemp("auth"), free_port_block(1))
    yield stack
    assert stack.stop() == 0, stack.log_tail()


@pytest.fixture(scope="module")
async def tenants(secured: Stack) -> AsyncIterator[dict[str, str]]:
    async with Client.connect(_admin_url(secured)) as admin:
        await admin.create_store("storea")
        await admin.create_store("storeb")
    yield {
        "a": _user(secured, "tenant-a", "--store", "storea"),
        "b": _user(secured, "tenant-b", "--store", "storeb"),
    }


async def _violations(url: str, act: object) -> list[str]:
    """Run `act(nc)` on a raw NATS connection; the permission errors the server sent."""
    errors: list[str] = []

    async def on_error(error: Exception) -> None:
        errors.append(str(error))

    user = url.split("://", 1)[1].split(":", 1)[0]
    nc = await nats.connect(url, error_cb=on_error, inbox_prefix=f"_INBOX_{user}")
    try:
        await act(nc)  # type: ignore[operator]
        await nc.flush()

        async def reported() -> bool:
            return any("permissions violation" in e.lower() for e in errors)

        await wait_until(reported, timeout=DEADLINE_S, what="a permissions violation")
    finally:
        await nc.close()
    return errors


async def test_a_tenant_uses_its_own_store(tenants: dict[str, str]) -> None:
    async with Client.connect(tenants["a"], store="storea") as client:
        appended = await client.append("order-1", [NewEvent("Placed", {"n": 1})])
        assert (await client.read_stream("order-1")).events[0].position == appended.last_position
        async with client.subscribe(stream="order-1", from_position="start") as live:
            first = await asyncio.wait_for(anext(live), DEADLINE_S)
            assert getattr(first, "position", None) == appended.last_position


async def test_a_tenant_uses_its_own_store_from_blocking_calls(tenants: dict[str, str]) -> None:
    def append_and_read() -> None:
        with SyncClient.connect(tenants["a"], store="storea") as client:
            appended = client.append("order-2", [NewEvent("Placed", {"n": 2})])
            assert client.read_stream("order-2").events[0].position == appended.last_position

    await asyncio.to_thread(append_and_read)


async def test_a_tenant_cannot_reach_another_store(tenants: dict[str, str]) -> None:
    async with Client.connect(tenants["a"], store="storeb", timeout=1.0) as client:
        with pytest.raises(Unauthorized):  # the server refuses the request at once
            await client.append("order-1", [NewEvent("Placed", {})])
        with pytest.raises(Unauthorized):
            await client.read_stream("order-1")

    def blocking_calls() -> None:
        with SyncClient.connect(tenants["a"], store="storeb", timeout=1.0) as client:
            with pytest.raises(Unauthorized):  # the blocking connections are refused too
                client.append("order-1", [NewEvent("Placed", {})])
            with pytest.raises(Unauthorized):
                client.read_stream("order-1")

    await asyncio.to_thread(blocking_calls)

    async def read_other(nc: nats.NATS) -> None:
        with pytest.raises(nats.errors.Error):
            await nc.request("esdb.api.storeb.read_all", b"{}", timeout=1)

    assert await _violations(tenants["a"], read_other)

    async def listen_other(nc: nats.NATS) -> None:
        await nc.subscribe("esdb.events.storeb.>")

    assert await _violations(tenants["a"], listen_other)

    async def persistent_other(nc: nats.NATS) -> None:
        await nc.subscribe("esdb.subs.storeb.group", queue="group")

    assert await _violations(tenants["a"], persistent_other)


@pytest.mark.parametrize(
    "subject",
    [
        "esdb.internal.writer.ops",
        "esdb.api._sys.store_remove",
        "$JS.API.INFO",
        # Subscribe-only: a forged announcement would give up every client's waiting writes.
        "esdb.cluster.serving",
        "esdb.leader.storeb.append",
    ],
)
async def test_a_tenant_cannot_touch_internals_or_management(
    tenants: dict[str, str], subject: str
) -> None:
    async def publish(nc: nats.NATS) -> None:
        await nc.publish(subject, b"{}")

    assert await _violations(tenants["a"], publish)


async def test_no_credential_no_connection(secured: Stack) -> None:
    with pytest.raises(nats.errors.Error):
        await nats.connect(secured.url, allow_reconnect=False, connect_timeout=2)
    wrong = secured.url.replace("://", "://tenant-a:wrong@", 1)
    with pytest.raises(nats.errors.Error):
        await nats.connect(wrong, allow_reconnect=False, connect_timeout=2)


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate for 127.0.0.1: (cert, key, CA) files."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = (directory / f"{n}.pem" for n in ("cert", "key", "ca"))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    return cert_file, key_file, ca_file


async def test_tls_end_to_end(tmp_path: Path) -> None:
    cert_file, key_file, ca_file = _certificates(tmp_path)
    stack = _up(
        tmp_path / "tls",
        free_port_block(1),
        *("--tls-cert", str(cert_file), "--tls-key", str(key_file), "--tls-ca", str(ca_file)),
    )
    try:
        url = _admin_url(stack)
        host = url.split("@", 1)[1]
        async with Client.connect(f"esdb://{url.split('://')[1].split('@')[0]}@{host}"
                                  f"?tls=true&tls_ca_file={ca_file}") as client:  # fmt: skip
            result = await client.append("order-1", [NewEvent("Placed", {})])
            assert (await client.read_stream("order-1")).events[0].position == result.last_position

        def blocking_calls() -> None:
            secret = url.split("://")[1].split("@")[0]
            with SyncClient.connect(
                f"esdb://{secret}@{host}?tls=true&tls_ca_file={ca_file}"
            ) as client:
                appended = client.append("order-2", [NewEvent("Placed", {})])
                assert client.read_stream("order-2").events[0].position == appended.last_position

        await asyncio.to_thread(blocking_calls)
        port = int(host.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        info = await asyncio.wait_for(reader.readline(), DEADLINE_S)
        writer.close()
        assert b'"tls_required":true' in info  # no plain-text connection is served
        untrusted = ssl.create_default_context()  # the system CAs do not know ours
        with pytest.raises((ssl.SSLError, nats.errors.Error, OSError)):
            await nats.connect(url, tls=untrusted, allow_reconnect=False, connect_timeout=2)
    finally:
        assert stack.stop() == 0, stack.log_tail()


async def test_a_tls_cluster_replicates_over_tls_routes(tmp_path: Path) -> None:
    cert_file, key_file, ca_file = _certificates(tmp_path)
    port = free_port_block(3)
    data_dir = tmp_path / "cluster"
    args = [sys.executable, "-m", "esdb.cli.main", "up", "--data-dir", str(data_dir)]
    args += ["--nats-port", str(port), "--nodes", "3", "--auth"]
    args += ["--tls-cert", str(cert_file), "--tls-key", str(key_file), "--tls-ca", str(ca_file)]
    urls = ",".join(f"tls://127.0.0.1:{port + i}" for i in range(3))
    stack = launch_stack(args, url=urls, data_dir=data_dir, what="up --nodes 3 with TLS")
    try:
        credentials = (data_dir / "auth" / "admin.creds").read_text().strip()
        trusted = ssl.create_default_context(cafile=str(ca_file))
        nc = await nats.connect(
            [f"tls://{credentials}@127.0.0.1:{port + i}" for i in range(3)],
            tls=trusted,
            inbox_prefix="_INBOX_admin",
        )
        api = Api(nc)
        try:
            for n in range(20):
                body = {"stream": f"order-{n % 4}", "events": [{"type": "Placed", "data": {}}]}
                await api.ok("append", body)
            applied = await wait_converged(api)  # JetStream replicated over the routes
            assert applied >= 20
        finally:
            await nc.close()
        for node in range(1, 4):
            config = (data_dir / "nats" / f"node{node}" / f"esdb-node{node}.conf").read_text()
            cluster = config.split("cluster {", 1)[1]
            route_port = int(cluster.split("listen:", 1)[1].split("\n", 1)[0].rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", route_port)
            info = await asyncio.wait_for(reader.read(), DEADLINE_S)
            writer.close()
            # A plain-text peer gets nothing it could route on: the server expects TLS first.
            assert b"INFO" not in info or b'"tls_required":true' in info, info
            reader, writer = await asyncio.open_connection("127.0.0.1", route_port, ssl=trusted)
            writer.close()  # and a TLS peer that trusts the CA gets through the handshake
    finally:
        assert stack.stop() == 0, stack.log_tail()
