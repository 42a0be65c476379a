"""Every process of `esdb up` serves `/metrics`, `/healthz` and `/readyz` on its own port
(`<data-dir>/run/<name>.http`), and the metrics move with the load."""

from __future__ import annotations

import asyncio
import re

import pytest

from esdb.services.supervisor.stack import NODE_SERVICES
from tests.stack import Api, Stack, http_get, wait_until

SERVICES = [("gateway", 1), *((service, 1) for service in NODE_SERVICES)]


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the series `name{labels}` in Prometheus text (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name and ",".join(sorted((match[2] or "").split(","))) == wanted:
            return float(match[3])
    return 0.0


async def scrape(stack: Stack, service: str) -> str:
    status, text = await http_get(stack.http_url(service) + "/metrics")
    assert status == 200
    return text


@pytest.mark.parametrize(("service", "node"), SERVICES)
async def test_every_process_is_alive_and_ready(stack: Stack, service: str, node: int) -> None:
    url = stack.http_url(service, node)
    assert await http_get(url + "/healthz") == (200, "ok\n")

    async def ready() -> bool:
        return (await http_get(url + "/readyz"))[0] == 200

    await wait_until(ready, timeout=30, what=f"{service} to be ready")
    status, text = await http_get(url + "/metrics")
    assert status == 200
    assert sample(text, "esdb_service_info", service=service, node=f"node{node}") == 1
    assert sample(text, "process_resident_memory_bytes") > 0
    assert (await http_get(url + "/nothing"))[0] == 404


async def test_the_metrics_move_with_appends_and_reads(stack: Stack, api: Api) -> None:
    gateway_before = await scrape(stack, "gateway")
    writer_before = await scrape(stack, "writer")
    reader_before = await scrape(stack, "reader")

    events = [{"type": "Counted", "data": {"n": n}} for n in range(3)]
    await asyncio.gather(
        *(
            api.ok(
                "append", {"stream": f"metrics-{n}", "expected_version": "any", "events": events}
            )
            for n in range(30)
        )
    )
    for n in range(5):
        await api.ok("read_stream", {"stream": f"metrics-{n}"})

    gateway = await scrape(stack, "gateway")
    writer = await scrape(stack, "writer")
    reader = await scrape(stack, "reader")

    def grew(before: str, after: str, name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    # Writes go from the servers straight to the writer leader, reads to a reader, never
    # through the gateway.
    appends = {"operation": "append"}
    assert grew(writer_before, writer, "esdb_writer_request_seconds_count", **appends) == 30
    assert sample(writer, "esdb_writer_request_seconds_bucket", le="+Inf", **appends) >= 30
    assert grew(gateway_before, gateway, "esdb_gateway_request_seconds_count", **appends) == 0
    reads = {"operation": "read_stream"}
    assert grew(gateway_before, gateway, "esdb_gateway_request_seconds_count", **reads) == 0
    assert grew(reader_before, reader, "esdb_reader_request_seconds_count", **reads) == 5
    assert sample(reader, "esdb_reader_request_seconds_bucket", le="+Inf", **reads) >= 5
    assert grew(writer_before, writer, "esdb_writer_appended_events_total") == 90
    entries = grew(writer_before, writer, "esdb_writer_log_entries_total")
    assert 1 <= entries <= 30  # batched: never more entries than appends
    assert grew(writer_before, writer, "esdb_writer_batch_events_sum") == 90
    assert grew(writer_before, writer, "esdb_applied_sequence", node="node1") == entries
    assert sample(writer, "esdb_writer_leader", node="node1") == 1
    assert sample(writer, "esdb_follower_lag", node="node1") == 0


async def test_a_wrong_expected_version_counts_as_an_error_by_code(stack: Stack, api: Api) -> None:
    before = await scrape(stack, "writer")
    await api.ok("append", {"stream": "metrics-wev", "expected_version": "any", "events": [
        {"type": "T", "data": {}}
    ]})  # fmt: skip
    error = await api.error(
        "append",
        {"stream": "metrics-wev", "expected_version": "no_stream", "events": [{"type": "T"}]},
    )
    assert error["code"] == "wrong_expected_version"

    after = await scrape(stack, "writer")
    labels = {"operation": "append", "code": "wrong_expected_version"}
    grown = sample(after, "esdb_writer_errors_total", **labels) - sample(
        before, "esdb_writer_errors_total", **labels
    )
    assert grown == 1


async def test_subscription_lag_and_parked_counts(stack: Stack, api: Api) -> None:
    await api.ok(
        "subscription_create",
        {"subscription": "metrics-sub", "selector": {"category": "metricssub"}, "start": "start"},
    )
    await api.ok(
        "append",
        {"stream": "metricssub-1", "expected_version": "any", "events": [{"type": "T"}]},
    )

    async def lagging() -> bool:
        text = await scrape(stack, "subscription")
        labels = {"store": "default", "subscription": "metrics-sub"}
        return (
            sample(text, "esdb_subscription_lag", **labels) > 0
            and "esdb_subscription_parked{" in text
        )

    # No consumer takes the deliveries, so the checkpoint stays behind the store.
    await wait_until(lagging, timeout=30, what="the subscription's lag on /metrics")
