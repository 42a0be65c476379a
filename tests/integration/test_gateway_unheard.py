"""When the service a request is for has no responder, the gateway says `unavailable` with
`delivered: false`: nobody received it, so the client may send even a create again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats.errors

from esdb.services.gateway.__main__ import serve as serve_gateway
from esdb.shared.settings import Settings
from esdb.shared.telemetry import Telemetry
from tests.stack import connect_api, wait_until


async def test_a_request_no_service_heard_is_unavailable_and_undelivered(
    plain_nats_url: str, tmp_path: Path
) -> None:
    stop = asyncio.Event()
    settings = Settings(nats_url=plain_nats_url, data_dir=tmp_path)
    gateway = asyncio.create_task(serve_gateway(settings, stop, Telemetry.create("gateway", "")))
    api = await connect_api(plain_nats_url)

    async def gateway_answers() -> bool:
        try:
            await api.raw("esdb.api._sys.health", b"{}", timeout=5)
        except nats.errors.NoRespondersError:
            return False
        return True

    try:
        await wait_until(gateway_answers, timeout=30, what="the gateway to subscribe")
        body = {"subscription": "s", "selector": {"all": True}}
        for operation, data in (("subscription_create", body), ("read_stream", {"stream": "s"})):
            reply = await api.raw(
                f"esdb.api.default.{operation}", json.dumps(data).encode(), timeout=10
            )
            error = json.loads(reply)["error"]
            assert error["code"] == "unavailable", error
            assert error["details"]["delivered"] is False, error
    finally:
        await api.nc.close()
        stop.set()
        await asyncio.wait_for(gateway, timeout=30)
