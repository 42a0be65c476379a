"""What a benchmark run measured: throughput, latency percentiles, memory and CPU, as data."""

from __future__ import annotations

import math
from array import array
from collections import Counter

import msgspec

APPEND_TARGET = 2.0
"""esdb appends must reach at least this multiple of JetStream's events/s."""
READ_TARGET = 1.0
"""esdb `read_all` must reach at least this multiple of the ordered consumer's events/s."""


class AppendFigures(msgspec.Struct, kw_only=True):
    """One append path: events that landed, failed requests, throughput and latency."""

    path: str
    events: int
    errors: int
    error_codes: dict[str, int]
    seconds: float
    events_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float


class ReadFigures(msgspec.Struct, kw_only=True):
    """One read path: events received from the first request to the last event."""

    path: str
    events: int
    seconds: float
    events_per_s: float


class Ratio(msgspec.Struct, kw_only=True):
    """esdb's events/s over JetStream's, and whether it meets the target."""

    value: float
    target: float
    met: bool


class ProcessUsage(msgspec.Struct, kw_only=True):
    """One process at one moment: resident memory in KiB (anonymous = heap and stacks) and
    the CPU time (user + system) it has used since it started."""

    process: str
    pid: int
    rss_kib: int
    anon_kib: int
    cpu_s: float


class ResourceSample(msgspec.Struct, kw_only=True):
    """Every process after a phase: how many events that phase handled, how many esdb held."""

    label: str
    phase_events: int
    events_stored: int
    processes: list[ProcessUsage]


class BenchConfig(msgspec.Struct, kw_only=True):
    """What was run, so that a reader of the figures can reproduce them."""

    events: int
    clients: int
    durability: str
    stream_length: int
    read_page: int
    event_bytes: int
    scenario: str
    url: str
    own_stack: bool
    nats_server_version: str


class BenchReport(msgspec.Struct, kw_only=True):
    """Everything one `esdb bench` run printed, as machine-readable data."""

    config: BenchConfig
    appends: list[AppendFigures] = msgspec.field(default_factory=list)
    append_ratio: Ratio | None = None
    reads: list[ReadFigures] = msgspec.field(default_factory=list)
    read_ratio: Ratio | None = None
    resources: list[ResourceSample] = msgspec.field(default_factory=list)


class LatencyLog:
    """Per-request latencies of one run, kept compactly (8 bytes each) for percentiles."""

    def __init__(self) -> None:
        self._seconds = array("d")
        self.events = 0
        self.errors: Counter[str] = Counter()

    def ok(self, seconds: float, events: int = 1) -> None:
        """A request that stored `events` events in `seconds`."""
        self._seconds.append(seconds)
        self.events += events

    def failed(self, code: str) -> None:
        """A request that stored nothing; `code` says why."""
        self.errors[code] += 1

    def figures(self, path: str, wall_seconds: float) -> AppendFigures:
        """Throughput over the whole run and latency percentiles of the successful requests."""
        ordered = sorted(self._seconds)
        return AppendFigures(
            path=path,
            events=self.events,
            errors=sum(self.errors.values()),
            error_codes=dict(self.errors),
            seconds=round(wall_seconds, 3),
            events_per_s=round(self.events / wall_seconds, 1) if wall_seconds > 0 else 0.0,
            p50_ms=round(percentile(ordered, 50) * 1000, 3),
            p99_ms=round(percentile(ordered, 99) * 1000, 3),
            max_ms=round(ordered[-1] * 1000, 3) if ordered else 0.0,
        )


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(esdb: float, jetstream: float, target: float) -> Ratio:
    """esdb / JetStream, rounded, with the verdict against `target`."""
    value = esdb / jetstream if jetstream > 0 else math.inf
    return Ratio(value=round(value, 2), target=target, met=value >= target)


def read_figures(path: str, events: int, seconds: float) -> ReadFigures:
    """Throughput of one read path."""
    return ReadFigures(
        path=path,
        events=events,
        seconds=round(seconds, 3),
        events_per_s=round(events / seconds, 1) if seconds > 0 else 0.0,
    )
