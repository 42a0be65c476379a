"""Writes and reads on a NATS that `esdb up` did not configure: without the servers' subject
mapping they reach the gateway, which still serves them (writes in coalesced batches to the
leader, reads through a reader), DCB appends and reads included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from esdb.client import Client
from esdb.services.supervisor.nats_server import free_port, nats_server_binary, wait_for_port
from tests.integration.test_metrics import sample
from tests.stack import connect_api, http_get, launch_stack


async def test_without_the_mapping_the_gateway_serves_writes(tmp_path: Path) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    config = tmp_path / "plain.conf"
    config.write_text(f'listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: "{tmp_path}/js"\n}}\n')
    server = subprocess.Popen(
        [nats_server_binary(), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_for_port(port)
        data_dir = tmp_path / "data"
        args = [sys.executable, "-m", "esdb.cli.main", "up", "--data-dir", str(data_dir)]
        stack = launch_stack(
            [*args, "--nats-url", url], url=url, data_dir=data_dir, what="esdb up --nats-url"
        )
        try:
            api = await connect_api(url)
            event = {"type": "Unmapped", "data": {"n": 1}}
            result = await api.ok(
                "append", {"stream": "plain-1", "expected_version": "no_stream", "events": [event]}
            )
            assert result["last_version"] == 0
            error = await api.error(
                "append", {"stream": "plain-1", "expected_version": "no_stream", "events": [event]}
            )
            assert error["code"] == "wrong_expected_version"
            page = await api.ok("read_stream", {"stream": "plain-1"})
            assert [e["data"] for e in page["events"]] == [{"n": 1}]
            # The gateway passes a compact read on as a usual one; the client takes either.
            async with Client.connect(url) as client:
                compact = await client.read_all_compact(from_position=result["last_position"])
                found = [(r.stream_id, json.loads(r.data)) for r in compact.records]
                assert found == [("plain-1", {"n": 1})]
            # DCB: the condition is checked by the leader, the read answered by a reader.
            tagged = {"type": "Tagged", "data": {}, "tags": ["g-1"]}
            condition = {"fail_if_events_match": {"items": [{"tags": ["g-1"]}]}}
            first = await api.ok("dcb_append", {"events": [tagged], "condition": condition})
            refused = await api.error("dcb_append", {"events": [tagged], "condition": condition})
            assert (refused["code"], refused["details"]["position"]) == (
                "append_condition_failed",
                first["position"],
            )
            by_tag = await api.ok("dcb_read", {"query": {"items": [{"tags": ["g-1"]}]}})
            assert ([e["position"] for e in by_tag["events"]], by_tag["head"]) == (
                [first["position"]],
                first["position"],
            )
            status, metrics = await http_get(stack.http_url("gateway") + "/metrics")
            assert status == 200
            answered = "esdb_gateway_request_seconds_count"
            assert sample(metrics, answered, operation="append") == 2
            assert sample(metrics, answered, operation="read_stream") == 1
            await api.nc.close()
        finally:
            stack.stop()
    finally:
        server.kill()
        server.wait()
