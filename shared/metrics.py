"""The metrics each service exposes on `/metrics`, one registry per process (docs/observability.md
lists them). Counters and histograms are prometheus_client's: an update takes an uncontended
lock, so they are updated once per request or per batch, never per event. Levels (applied
sequence, lags, parked counts) are read when scraped, costing nothing in between."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from esdb.contracts.subscriptions import SubscriptionInfo

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
OTHER = "other"
"""The operation label of a request for no known operation."""

Sample = Callable[[], Iterable[tuple[Sequence[str], float]]]


def service_registry(service: str, node: str) -> CollectorRegistry:
    """A registry with the process's CPU and memory and `esdb_service_info{service,node}`."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created`: noise here
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    info = Gauge(
        "esdb_service_info", "This process: its service and node", ["service", "node"],
        registry=registry,
    )  # fmt: skip
    info.labels(service, node).set(1)
    return registry


class Sampled(Collector):
    """A gauge family read when scraped: `sample()` gives (label values, value) pairs."""

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        documentation: str,
        labels: Sequence[str],
        sample: Sample,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = list(labels)
        self._sample = sample
        registry.register(self)

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self._name, self._documentation, labels=self._labels)]

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=self._labels)
        for label_values, value in self._sample():
            family.add_metric(list(label_values), value)
        return [family]


class RequestMetrics:
    """Public requests a service answers: latencies by operation (whose `_count` is the request
    rate: one update per request, not two), errors by code. Named `esdb_<service>_...`."""

    def __init__(
        self, registry: CollectorRegistry, operations: Iterable[str], service: str = "gateway"
    ) -> None:
        self._operations = frozenset(operations)
        self._seconds = Histogram(
            f"esdb_{service}_request_seconds",
            "Time from a request's arrival to its reply, by operation; _count: requests",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._errors = Counter(
            f"esdb_{service}_errors",
            f"Error replies of the {service}, by operation and error code",
            ["operation", "code"],
            registry=registry,
        )
        # Looked up once per operation, so a request costs a dict lookup; an operation
        # appears once it was asked for.
        self._children: dict[str, Histogram] = {}

    def answered(self, operation: str, seconds: float, error_code: str | None = None) -> None:
        """Count one reply to `operation` that took `seconds`, with its error code if any."""
        child = self._children.get(operation)
        if child is None:
            if operation not in self._operations:
                operation = OTHER  # any subject reaches the gateway: keep the label set small
            child = self._children[operation] = self._seconds.labels(operation)
        child.observe(seconds)
        if error_code is not None:
            self._errors.labels(operation, error_code).inc()


class WriterMetrics:
    """The log as this writer sees it: batches it sequenced as leader, how far it applied."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.entries = Counter(
            "esdb_writer_log_entries",
            "Log entries this writer appended as leader",
            registry=registry,
        )
        self.events = Counter(
            "esdb_writer_appended_events",
            "Events this writer appended to the log as leader",
            registry=registry,
        )
        self.batch_requests = Histogram(
            "esdb_writer_batch_requests",
            "Requests (writes and service ops) per log entry",
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_events = Histogram(
            "esdb_writer_batch_events",
            "Events per log entry",
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "esdb_writer_commit_seconds",
            "Time from planning a batch to having it durable in the log and applied",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def committed(self, requests: int, events: int, seconds: float) -> None:
        """Count one log entry of `requests` and `events`, durable and applied in `seconds`."""
        self.entries.inc()
        self.events.inc(events)
        self.batch_requests.observe(requests)
        self.batch_events.observe(events)
        self.commit_seconds.observe(seconds)


SUBSCRIPTION_LEVELS = (
    ("esdb_subscription_lag", "Events of the store after the subscription's checkpoint", "lag"),
    ("esdb_subscription_parked", "Events parked by the subscription", "parked"),
    ("esdb_subscription_in_flight", "Deliveries awaiting an answer", "in_flight"),
    ("esdb_subscription_checkpoint", "The subscription's recorded checkpoint", "checkpoint"),
)


class SubscriptionLevels(Collector):
    """Per persistent subscription, read when scraped: lag, parked, in flight, checkpoint."""

    def __init__(
        self,
        registry: CollectorRegistry,
        sample: Callable[[], Iterable[tuple[str, SubscriptionInfo]]],
    ) -> None:
        self._sample = sample
        registry.register(self)

    def _families(self) -> list[GaugeMetricFamily]:
        labels = ["store", "subscription"]
        return [GaugeMetricFamily(name, doc, labels=labels) for name, doc, _ in SUBSCRIPTION_LEVELS]

    def describe(self) -> list[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> list[GaugeMetricFamily]:
        families = self._families()
        for store, info in self._sample():
            for family, (_, _, field) in zip(families, SUBSCRIPTION_LEVELS, strict=True):
                family.add_metric([store, info.subscription], getattr(info, field))
        return families
