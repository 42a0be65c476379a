"""A service's HTTP endpoint: /healthz, /readyz with the reason, /metrics in Prometheus text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from esdb.shared.metrics import RequestMetrics
from esdb.shared.status_server import bound_port, start_status_server
from esdb.shared.telemetry import Telemetry
from tests.stack import http_get


@pytest.fixture
async def served() -> AsyncIterator[tuple[Telemetry, str]]:
    telemetry = Telemetry.create("reader", "node1")
    server = await start_status_server(telemetry, "127.0.0.1", 0)
    yield telemetry, f"http://127.0.0.1:{bound_port(server)}"
    server.close()
    await server.wait_closed()


async def test_healthz_answers_while_readyz_says_why_not(
    served: tuple[Telemetry, str],
) -> None:
    telemetry, url = served
    assert await http_get(url + "/healthz") == (200, "ok\n")
    assert await http_get(url + "/readyz") == (503, "not ready: starting\n")

    problem: list[str | None] = ["not connected to NATS"]

    async def check() -> str | None:
        return problem[0]

    telemetry.ready_when(check)
    assert await http_get(url + "/readyz") == (503, "not ready: not connected to NATS\n")
    problem[0] = None
    assert await http_get(url + "/readyz") == (200, "ready\n")


async def test_a_failing_or_hanging_check_is_not_ready(
    served: tuple[Telemetry, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    telemetry, url = served

    async def broken() -> str | None:
        raise RuntimeError("boom")

    telemetry.ready_when(broken)
    assert await http_get(url + "/readyz") == (
        503,
        "not ready: the readiness check failed: RuntimeError\n",
    )

    async def hanging() -> str | None:
        await asyncio.Event().wait()
        return None

    monkeypatch.setattr("esdb.shared.status_server.READY_TIMEOUT_S", 0.1)
    telemetry.ready_when(hanging)
    status, body = await http_get(url + "/readyz")
    assert status == 503 and "took over" in body


async def test_metrics_are_prometheus_text(served: tuple[Telemetry, str]) -> None:
    telemetry, url = served
    metrics = RequestMetrics(telemetry.registry, ["read_stream"], service="reader")
    metrics.answered("read_stream", 0.001)
    metrics.answered("read_stream", 0.002, "stream_not_found")

    status, text = await http_get(url + "/metrics")

    assert status == 200
    assert 'esdb_reader_request_seconds_count{operation="read_stream"} 2.0' in text
    assert 'esdb_reader_errors_total{code="stream_not_found",operation="read_stream"} 1.0' in text
    assert 'esdb_service_info{node="node1",service="reader"} 1.0' in text
    assert "_created" not in text


async def test_other_paths_and_methods_are_refused(served: tuple[Telemetry, str]) -> None:
    _, url = served
    assert (await http_get(url + "/"))[0] == 404
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    writer.write(b"POST /readyz HTTP/1.1\r\n\r\n")
    response = await reader.read()
    writer.close()
    assert response.startswith(b"HTTP/1.1 405 ")
