"""Tracing is off unless ESDB_OTLP_ENDPOINT names a collector; then spans go there over OTLP."""

from __future__ import annotations

from typing import Any

import pytest

from esdb.shared.settings import Settings
from esdb.shared.tracing import tracer_provider


def test_no_endpoint_means_no_tracer_provider() -> None:
    assert tracer_provider(Settings(), "gateway") is None


def test_an_endpoint_exports_over_otlp_http_with_the_service_named() -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    settings = Settings(node_id="node2", otlp_endpoint="http://collector:4318/")

    provider = tracer_provider(settings, "writer")

    assert provider is not None
    try:
        attributes = provider.resource.attributes
        assert attributes["service.name"] == "esdb-writer"
        assert attributes["service.instance.id"] == "writer-node2"
        processors: Any = provider._active_span_processor._span_processors
        (processor,) = processors
        assert processor._batch_processor._exporter._endpoint == "http://collector:4318/v1/traces"
    finally:
        provider.shutdown()
