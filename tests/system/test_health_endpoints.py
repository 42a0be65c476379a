"""`/readyz` says 503 with the reason while a dependency is gone, and 200 again once it is back;
`/healthz` answers throughout (the process itself is fine)."""

from __future__ import annotations

import os
import signal

from tests.stack import Stack, http_get, wait_until

FLIP_TIMEOUT_S = 30.0


async def readiness(url: str) -> tuple[int, str]:
    return await http_get(url + "/readyz")


async def wait_for_readiness(url: str, status: int, what: str) -> str:
    """Poll `/readyz` until it answers `status`; its body."""
    seen: list[str] = []

    async def answers() -> bool:
        code, body = await readiness(url)
        seen[:] = [body]
        return code == status

    await wait_until(answers, timeout=FLIP_TIMEOUT_S, what=what)
    return seen[0]


async def test_the_gateway_is_not_ready_while_the_writer_is_paused(fresh_stack: Stack) -> None:
    gateway = fresh_stack.http_url("gateway")
    await wait_for_readiness(gateway, 200, "the gateway to be ready")
    writer = fresh_stack.pid("writer")

    os.kill(writer, signal.SIGSTOP)
    try:
        reason = await wait_for_readiness(gateway, 503, "the gateway to miss the writer")
        assert "writer leader" in reason, reason
        assert await http_get(gateway + "/healthz") == (200, "ok\n")
    finally:
        os.kill(writer, signal.SIGCONT)

    await wait_for_readiness(gateway, 200, "the gateway to be ready again")


async def test_every_service_is_not_ready_while_nats_is_paused(fresh_stack: Stack) -> None:
    urls = {name: fresh_stack.http_url(name) for name in ("gateway", "writer", "reader")}
    for name, url in urls.items():
        await wait_for_readiness(url, 200, f"the {name} to be ready")
    server = fresh_stack.pid("nats-server")

    os.kill(server, signal.SIGSTOP)
    try:
        for name, url in urls.items():
            reason = await wait_for_readiness(url, 503, f"the {name} to miss NATS")
            assert reason.startswith("not ready: "), reason
    finally:
        os.kill(server, signal.SIGCONT)

    for name, url in urls.items():
        await wait_for_readiness(url, 200, f"the {name} to be ready again")
