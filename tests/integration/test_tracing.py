"""One trace per request across services: a gateway, a writer and a reader run in this process
(on a real nats-server with JetStream) with their spans in an in-memory exporter; the trace
context travels between them only in NATS headers, as between processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator

import msgspec
import nats
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from esdb.services.gateway.__main__ import serve as serve_gateway
from esdb.services.reader.__main__ import serve as serve_reader
from esdb.services.supervisor.nats_server import (
    ServerSpec,
    free_port,
    nats_server_binary,
    wait_for_port,
    write_server_config,
)
from esdb.services.writer.__main__ import serve as serve_writer
from esdb.shared.settings import Settings
from esdb.shared.telemetry import Telemetry
from esdb.shared.tracing import service_tracer
from tests.stack import Api, wait_until

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE}-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """Every span this process ends from now on (the tracer provider is process-wide)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server with JetStream, in memory."""
    spec = ServerSpec(name="tracing", port=free_port())
    config = write_server_config(
        spec, work_dir=tmp_path_factory.mktemp("nats"), durability="memory"
    )
    server = subprocess.Popen(
        [nats_server_binary(), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield spec.url
    server.kill()
    server.wait()


@pytest.fixture(scope="module")
async def api(
    nats_url: str, spans: InMemorySpanExporter, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    """A writer, a reader and a gateway in this process, traced, and a client connection."""
    await wait_for_port(int(nats_url.rsplit(":", 1)[1]))
    settings = Settings(
        nats_url=nats_url, data_dir=tmp_path_factory.mktemp("node1"), durability="memory"
    )
    reader_settings = msgspec.structs.replace(settings, data_dir=tmp_path_factory.mktemp("reader"))
    writer = Telemetry.create("writer", "node1", service_tracer("writer"))
    reader = Telemetry.create("reader", "node1", service_tracer("reader"))
    gateway = Telemetry.create("gateway", "node1", service_tracer("gateway"))
    assert writer.tracer is not None and gateway.tracer is not None
    stop = asyncio.Event()
    running = [
        asyncio.create_task(serve_writer(settings, stop, writer)),
        # LMDB opens an environment once per process: this reader gets a node of its own.
        asyncio.create_task(serve_reader(reader_settings, stop, reader)),
        asyncio.create_task(serve_gateway(settings, stop, gateway)),
    ]

    async def ready() -> bool:
        for task in running:
            if task.done():
                task.result()  # a service that failed to start fails the test
        return await gateway.not_ready() is None

    await wait_until(ready, timeout=60, what="the gateway to see a writer leader and a reader")
    client = Api(await nats.connect(nats_url))
    yield client
    await client.nc.close()
    stop.set()
    # Each service drains its NATS connection on the way out, which nats-py bounds at 30 s by
    # itself: a slow drain must not fail the fixture before the service has had that long.
    await asyncio.wait_for(asyncio.gather(*running), timeout=90)


def by_name(found: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in found if span.name == name]


def trace_of(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def scope_of(span: ReadableSpan) -> str:
    assert span.instrumentation_scope is not None
    return span.instrumentation_scope.name


async def append(api: Api, stream: str, headers: dict[str, str] | None = None) -> None:
    body = {"stream": stream, "expected_version": "any", "events": [{"type": "T", "data": {}}]}
    reply = await api.raw(
        "esdb.api.default.append", json.dumps(body).encode(), headers=headers, timeout=10
    )
    assert "error" not in json.loads(reply), reply


async def test_an_append_is_one_trace_through_the_writer(
    api: Api, spans: InMemorySpanExporter
) -> None:
    spans.clear()

    await append(api, "order-1", {"traceparent": CLIENT_TRACEPARENT})

    found = list(spans.get_finished_spans())
    traced = [span for span in found if f"{trace_of(span):032x}" == CLIENT_TRACE]
    names = {span.name for span in traced}
    assert {"writer append", "writer sequence", "writer log_publish", "writer apply"} <= names
    # The servers route writes straight to the writer leader: the gateway never sees them.
    assert {scope_of(span) for span in traced} == {"esdb.writer"}
    (request,) = by_name(traced, "writer append")
    (sequenced,) = by_name(traced, "writer sequence")
    assert request.kind is SpanKind.SERVER and request.parent is not None
    assert request.parent.span_id == 0xB7AD6B7169203331  # the client's span, across NATS
    assert sequenced.parent is not None and request.context is not None
    assert sequenced.parent.span_id == request.context.span_id
    for step in by_name(traced, "writer log_publish") + by_name(traced, "writer apply"):
        assert step.parent is not None and sequenced.context is not None
        assert step.parent.span_id == sequenced.context.span_id


async def test_a_batch_serving_many_requests_links_to_each(
    api: Api, spans: InMemorySpanExporter
) -> None:
    spans.clear()

    await asyncio.gather(*(append(api, f"user-{n}") for n in range(40)))

    found = list(spans.get_finished_spans())
    requests = by_name(found, "writer append")
    assert len(requests) == 40
    assert len({trace_of(span) for span in requests}) == 40  # one trace per request
    # Links join traces: follow them from each request until the writer applied it.
    joined: dict[int, set[int]] = {}
    for span in found:
        for link in span.links:
            joined.setdefault(trace_of(span), set()).add(link.context.trace_id)
            joined.setdefault(link.context.trace_id, set()).add(trace_of(span))
    applied = {trace_of(span) for span in by_name(found, "writer apply")}
    for request in requests:
        reached, frontier = {trace_of(request)}, [trace_of(request)]
        while frontier:
            for other in joined.get(frontier.pop(), set()) - reached:
                reached.add(other)
                frontier.append(other)
        assert reached & applied, f"request trace {trace_of(request):032x} never reached apply"
    batches = by_name(found, "writer sequence")
    assert any(len(span.links) > 1 for span in batches), "40 concurrent appends, no batching?"


async def test_a_read_is_traced_from_the_client_into_the_reader(
    api: Api, spans: InMemorySpanExporter
) -> None:
    """The servers route reads straight to a reader, as they route writes to the leader."""
    spans.clear()

    reply = await api.raw(
        "esdb.api.default.read_stream",
        json.dumps({"stream": "order-2"}).encode(),
        headers={"traceparent": CLIENT_TRACEPARENT},
    )

    # The reader's own node has no stores (see the fixture): an error, traced all the same.
    assert json.loads(reply)["error"]["code"] == "not_found"
    found = [s for s in spans.get_finished_spans() if f"{trace_of(s):032x}" == CLIENT_TRACE]
    assert by_name(found, "gateway read_stream") == []
    (answer,) = by_name(found, "reader read_stream")
    assert scope_of(answer) == "esdb.reader" and answer.kind is SpanKind.SERVER
    assert answer.parent is not None
    assert answer.parent.span_id == 0xB7AD6B7169203331  # the client's span, across NATS
