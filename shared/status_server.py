"""Each service's HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (the process
answers) and `/readyz` (it can serve: 200, else 503 with the reason). It runs on the service's
event loop, so a scrape reads the metrics without locks and a stuck loop fails `/healthz`."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from esdb.shared.telemetry import Telemetry

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 4.0
"""A readiness check slower than this is an answer too: not ready. Kubernetes' default probe
timeout is 1 s; probes of esdb should allow 5."""
_TEXT = "text/plain; charset=utf-8"
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


async def start_status_server(telemetry: Telemetry, host: str, port: int) -> asyncio.Server:
    """Listen on `host:port` (port 0: any free one; `server.sockets` tells which)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _serve_one(telemetry, reader, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)


def reachable_url(host: str, port: int) -> str:
    """How to reach a process listening on `host:port` from this machine."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bound_port(server: asyncio.Server) -> int:
    """The TCP port `server` listens on."""
    return int(server.sockets[0].getsockname()[1])


async def _serve_one(
    telemetry: Telemetry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    request = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
    while (await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)).strip():
        pass  # headers: nothing here depends on them
    parts = request.decode("latin-1").split()
    method, path = (parts[0], parts[1].split("?")[0]) if len(parts) >= 2 else ("", "")
    status, content_type, body = await _answer(telemetry, method, path)
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else body))
    await writer.drain()


async def _answer(telemetry: Telemetry, method: str, path: str) -> tuple[int, str, bytes]:
    if path not in ("/metrics", "/healthz", "/readyz"):
        return 404, _TEXT, b"not found: try /metrics, /healthz or /readyz\n"
    if method not in ("GET", "HEAD"):
        return 405, _TEXT, b"GET only\n"
    if path == "/metrics":
        return 200, CONTENT_TYPE_LATEST, generate_latest(telemetry.registry)
    if path == "/healthz":
        return 200, _TEXT, b"ok\n"
    try:
        reason = await asyncio.wait_for(telemetry.not_ready(), READY_TIMEOUT_S)
    except TimeoutError:
        reason = f"the readiness check took over {READY_TIMEOUT_S:.0f} s"
    except Exception as e:
        log.warning("readiness check failed: %s", e)
        reason = f"the readiness check failed: {type(e).__name__}"
    if reason is None:
        return 200, _TEXT, b"ready\n"
    return 503, _TEXT, f"not ready: {reason}\n".encode()
