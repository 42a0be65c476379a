"""Traces across services: W3C trace context (`traceparent`) in NATS headers, spans exported
over OTLP/HTTP when `ESDB_OTLP_ENDPOINT` is set. With tracing off a service has no tracer at
all (`service_tracer` returns None), so the request path spends nothing on it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    StatusCode,
    Tracer,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from esdb.shared.settings import Settings, SettingsError

TRACEPARENT = "traceparent"
_propagator = TraceContextTextMapPropagator()
_ROOT = Context()


def setup_tracing(settings: Settings, service: str) -> TracerProvider | None:
    """Install `tracer_provider(settings, service)` as the process's, if there is one."""
    provider = tracer_provider(settings, service)
    if provider is not None:
        trace.set_tracer_provider(provider)
    return provider


def tracer_provider(settings: Settings, service: str) -> TracerProvider | None:
    """A tracer provider exporting to `settings.otlp_endpoint` (OTLP over HTTP,
    `<endpoint>/v1/traces`) in batches, off the request path; None when no endpoint is set."""
    if not settings.otlp_endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as e:
        raise SettingsError(
            "ESDB_OTLP_ENDPOINT: needs the OTLP exporter; pip install 'esdb[otlp]'"
        ) from e
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.namespace": "esdb",
                "service.name": f"esdb-{service}",
                "service.instance.id": f"{service}-{settings.node_id}",
            }
        )
    )
    endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def service_tracer(service: str) -> Tracer | None:
    """The tracer of `service` (`esdb.<service>`) when an SDK tracer provider is installed
    (by `setup_tracing`, or by a test), else None: tracing is off."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        return None
    return trace.get_tracer(f"esdb.{service}")


def incoming(headers: Mapping[str, str] | None) -> Context | None:
    """The trace context a message's headers carry, or None."""
    if not headers or TRACEPARENT not in headers:
        return None
    return _propagator.extract(headers)


def outgoing(span: Span, headers: dict[str, str] | None = None) -> dict[str, str]:
    """`headers` (a new dict if None) with `span`'s context added as `traceparent`."""
    carrier = {} if headers is None else headers
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def batch_span(
    tracer: Tracer,
    name: str,
    served: Iterable[SpanContext],
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
) -> Span:
    """A span for work done once for several requests: the child of the one request it serves,
    or, serving several, a root span linked to each (a batch has many causes, not one parent)."""
    distinct = list({(c.trace_id, c.span_id): c for c in served if c.is_valid}.values())
    if len(distinct) == 1:
        parent = trace.set_span_in_context(NonRecordingSpan(distinct[0]))
        return tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
    links = [Link(context) for context in distinct]
    return tracer.start_span(name, context=_ROOT, kind=kind, attributes=attributes, links=links)


def child_span(
    tracer: Tracer,
    name: str,
    parent: Span | Context | None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
) -> Span:
    """A span under `parent` (a span, or a context from `incoming`), or a root span."""
    if isinstance(parent, Span):
        parent = trace.set_span_in_context(parent)
    return tracer.start_span(
        name, context=parent if parent is not None else _ROOT, kind=kind, attributes=attributes
    )


def end_span(span: Span | None, error_code: str | None = None) -> None:
    """End a request's span (if traced), marked failed with `error_code` when there is one."""
    if span is None:
        return
    if error_code is not None:
        span.set_status(StatusCode.ERROR, error_code)
    span.end()
