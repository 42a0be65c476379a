"""What a benchmark run measured: throughput, latency percentiles, memory and CPU, as data."""

from __future__ import annotations

import math
import statistics
from array import array
from collections import Counter

import msgspec

APPEND_TARGET = 2.0
"""esdb appends must reach at least this multiple of JetStream's events/s (one node)."""
APPEND_TARGET_R3 = 0.8
"""The same on three nodes, against an R3 JetStream stream (the per-event cost issue's goal;
the longer-term aim is parity and beyond)."""
FAILOVER_TARGET_S = 3.0
"""The median time from killing the leader's writer to the first append acknowledged after."""
READ_TARGET = 1.0
"""esdb `read_all` must reach at least this multiple of the ordered consumer's events/s."""
LIVE_TARGET_P99_MS = 10.0
"""Append sent to the event's live message, p99, at half the maximum append rate (one node)."""
LIVE_LOAD = 0.5
"""The live and persistent scenarios' offered rate as a share of the measured maximum append
rate."""
EVENTSOURCING_TARGET = 1.0
"""eventsourcing on esdb must reach at least this multiple of the same application on
PostgreSQL, in each phase (saves, gets, notification reads)."""
LAG_GROWTH_ALLOWANCE_S = 0.5
"""persistent: the lag counts as bounded when the mean of the last third of its samples exceeds
the middle third's by less than this many seconds' worth of offered appends."""


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


CLIENT_ROW = "bench client"
"""The benchmark's own process in the memory and CPU tables."""


class ProcessUsage(msgspec.Struct, kw_only=True):
    """One process at one moment: resident memory in KiB (anonymous = heap and stacks) and
    the CPU time (user + system) it has used since it started."""

    process: str
    pid: int
    rss_kib: int
    anon_kib: int
    cpu_s: float
    messages: int | None = None
    """A nats-server's messages in plus out since it started (`varz`); None for the rest."""


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
    rounds: int = 1
    nodes: int = 1
    jetstream_replicas: int = 1
    placement: dict[str, str] = {}
    """Where things ended up in a cluster: the server the bench client uses, the leaders of
    the log stream, of the JetStream comparison stream and of the writers."""


class RoundFigures(msgspec.Struct, kw_only=True):
    """One round: esdb's then JetStream's appends (and reads), on fresh streams."""

    round: int
    appends: list[AppendFigures] = msgspec.field(default_factory=list)
    append_ratio: Ratio | None = None
    reads: list[ReadFigures] = msgspec.field(default_factory=list)
    read_ratio: Ratio | None = None


class AppendSummary(msgspec.Struct, kw_only=True):
    """One append path over every round: medians of the per-round figures, totals of events
    and errors, and the spread of events/s."""

    path: str
    rounds: int
    events: int
    errors: int
    error_codes: dict[str, int]
    events_per_s: float
    """Median over the rounds."""
    min_events_per_s: float
    max_events_per_s: float
    p50_ms: float
    """Median of the rounds' p50s."""
    p99_ms: float
    """Median of the rounds' p99s."""
    max_ms: float
    """The largest latency of any round."""


class ReadSummary(msgspec.Struct, kw_only=True):
    """One read path over every round: the median events/s and its spread."""

    path: str
    rounds: int
    events: int
    events_per_s: float
    min_events_per_s: float
    max_events_per_s: float


class FailoverRun(msgspec.Struct, kw_only=True):
    """One kill -9 of the leader's writer under load."""

    run: int
    killed: str
    """The node whose writer was killed (the leader at that moment)."""
    pid: int
    new_leader: str | None
    """Who took the writer lease after the kill (None if nobody was seen taking it)."""
    lease_taken_s: float | None
    """Kill to the lease key being written by another writer (a KV watch)."""
    first_ack_s: float | None
    """Kill to the first acknowledged append whose request was sent after the kill (None:
    no acknowledgement within the run's deadline)."""
    appends_before: int
    events_per_s_before: float
    """Acknowledged appends in the steady load before the kill, and their rate."""
    retries: int
    retry_codes: dict[str, int]
    """Requests answered with a retryable error (or none) between the kill and the end of
    the run, by code; each was retried with the same event ids."""
    anomalies: dict[str, int]
    """Non-retryable errors of the run (e.g. `wrong_expected_version` on a retry): an
    append retried with the same ids should never get one."""
    restart_s: float | None
    """Kill to the supervisor's new pid for the killed writer."""
    settled_s: float | None
    """Kill to every node answering `cluster_status` with lag 0."""


class FailoverReport(msgspec.Struct, kw_only=True):
    """Every failover run, and the median of the times to the first acknowledgement."""

    clients: int
    timeout_ms: int
    """The `timeout_ms` each append carried: how long a request stuck at a dead writer waits
    in the gateway before it is answered `timeout` (and retried)."""
    runs: list[FailoverRun]
    median_first_ack_s: float | None
    median_lease_taken_s: float | None
    target_s: float
    met: bool


class LatencyFigures(msgspec.Struct, kw_only=True):
    """Percentiles of one latency (ms; nearest rank) over `count` samples."""

    path: str
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float


class OpenLoopFigures(msgspec.Struct, kw_only=True):
    """Appends sent open-loop on a timetable: how many, how fast, how late, what failed."""

    offered_rate: float
    """events/s the timetable asks for: one append every 1/offered_rate s."""
    planned: int
    sent_rate: float
    """Appends sent / (last send - first send)."""
    send_seconds: float
    appended: int
    errors: int
    error_codes: dict[str, int]
    max_in_flight: int
    schedule_lag_p99_ms: float
    schedule_lag_max_ms: float
    """How late sends left against their timetable slot (the bench's own event loop)."""


class LiveReport(OpenLoopFigures, kw_only=True):
    """Open-loop appends at a fixed rate, and when each event arrived on its live subject."""

    subject: str
    """What the separate subscriber connection listened on."""
    rate_from: str
    """`probe` (a share of the rate the closed-loop probe reached) or `--rate`."""
    max_rate: float | None
    """events/s of the closed-loop probe (None with `--rate`)."""
    probe: AppendFigures | None
    received: int
    """Distinct positions of this run's appends seen on the live subject."""
    missing: int
    """Appended (acknowledged) events never seen on the live subject within the grace time."""
    duplicates: int
    """Live messages beyond the first for a position."""
    wrong_subject: int
    """Events whose live message (by position) came on another subject than their stream's."""
    foreign: int
    """Live messages for positions this run did not append (other traffic)."""
    slow_consumer: int
    """Slow-consumer errors on the subscriber connection (messages dropped by the client)."""
    latencies: list[LatencyFigures]
    """sent -> live message, reply -> live message, sent -> reply, slot -> live message."""
    target_p99_ms: float
    met: bool


class LagSample(msgspec.Struct, kw_only=True):
    """A consumer group's state at one moment of the persistent scenario."""

    at_s: float
    """Seconds since the first send."""
    lag: int
    """The server's figure: the last selected position (or stream sequence) minus the
    checkpoint (esdb) or ack floor (JetStream)."""
    in_flight: int
    """Delivered, not yet acked."""
    checkpoint: int
    undelivered: int
    """The bench's own count: acknowledged appends not yet delivered to a consumer."""


class LagFigures(msgspec.Struct, kw_only=True):
    """The lag over a run: its samples while the appends went on, and whether it held."""

    samples: list[LagSample]
    max: int
    final: int
    """The last sample while appends went on."""
    max_undelivered: int
    middle_mean: float
    last_mean: float
    """Mean lag of the middle and of the last third of the samples."""
    allowance: float
    """How far `last_mean` may exceed `middle_mean` (the offered rate x
    `LAG_GROWTH_ALLOWANCE_S`)."""
    bounded: bool | None
    """`last_mean <= middle_mean + allowance`; None with fewer than 3 samples."""
    failed_samples: int
    """Samples whose request failed (left out)."""


class DeliveryFigures(OpenLoopFigures, kw_only=True):
    """One side of the persistent scenario: its open-loop appends, and their delivery to
    competing consumers that ack every delivery."""

    path: str
    consumer: str
    """What consumed: the group or durable consumer, its consumers and window."""
    delivered: int
    """Distinct positions of this run's appends delivered (and acked)."""
    missing: int
    """Acknowledged appends never delivered (must be 0)."""
    deliveries: int
    """Every delivery of this run's events, repeats included."""
    redeliveries: int
    """Deliveries with an attempt number above 1."""
    duplicates: int
    """Deliveries beyond the first of a position (redelivered or not)."""
    foreign: int
    """Deliveries of positions this run did not append."""
    deliveries_per_s: float
    """`delivered` / (the first delivery of the last position to arrive - the first send)."""
    drain_s: float
    """The last send to the last position's first delivery."""
    latencies: list[LatencyFigures]
    """sent -> delivered, reply -> delivered, sent -> reply, slot -> delivered."""
    lag: LagFigures


class PersistentRatios(msgspec.Struct, kw_only=True):
    """esdb's figure over JetStream's (None when JetStream's is 0)."""

    deliveries_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    max_lag: float | None


class PersistentReport(msgspec.Struct, kw_only=True):
    """Persistent delivery with acks under open-loop appends: esdb's consumer group and a
    JetStream durable consumer at the same offered rate, one after the other."""

    rate_from: str
    max_rate: float | None
    probe: AppendFigures | None
    """As in `LiveReport`: where the offered rate came from."""
    name: str
    """The esdb group's and the JetStream durable consumer's name."""
    consumers: int
    max_in_flight: int
    """Per consumer: the group's `max_in_flight`; JetStream's `max_ack_pending` is this
    times `consumers`."""
    sides: list[DeliveryFigures]
    """esdb, then JetStream."""
    ratios: PersistentRatios


class PhaseFigures(msgspec.Struct, kw_only=True):
    """One timed phase of the eventsourcing application on one backend."""

    count: int
    """Aggregates saved, aggregates got, or notifications read."""
    seconds: float
    per_s: float
    errors: int
    """Saves or gets that raised, gets that returned an aggregate unlike the one saved, and
    notification passes that did not read exactly the events saved."""
    error_kinds: dict[str, int] = {}
    """The exception classes (or `mismatch`) behind `errors`."""


class BackendRound(msgspec.Struct, kw_only=True):
    """The eventsourcing application on one backend in one round: its three phases."""

    backend: str
    saves: PhaseFigures
    gets: PhaseFigures
    notifications: PhaseFigures


class PhaseSummary(msgspec.Struct, kw_only=True):
    """One phase of one backend over every round: the median rate and its spread."""

    count: int
    """Total over the rounds."""
    per_s: float
    """Median over the rounds."""
    min_per_s: float
    max_per_s: float
    errors: int


class BackendSummary(msgspec.Struct, kw_only=True):
    """One backend over every round."""

    backend: str
    saves: PhaseSummary
    gets: PhaseSummary
    notifications: PhaseSummary


class PhaseRatios(msgspec.Struct, kw_only=True):
    """esdb's rate over PostgreSQL's in each phase, with the verdict against the target."""

    saves: Ratio
    gets: Ratio
    notifications: Ratio


class EventsourcingRound(msgspec.Struct, kw_only=True):
    """One round: esdb's then PostgreSQL's phases, each on a fresh store or database."""

    round: int
    backends: list[BackendRound]
    ratios: PhaseRatios


class EventsourcingReport(msgspec.Struct, kw_only=True):
    """The same eventsourcing application on esdb and on PostgreSQL, round by round, the
    medians per backend, and the ratios of the medians."""

    aggregates: int
    """Aggregates saved per backend and round (timed; warm-up saves come first)."""
    events_per_aggregate: int
    warmup: int
    gets: int
    threads: int
    """Application threads of the saves and gets phases (PostgreSQL's pool has as many
    connections)."""
    page: int
    passes: int
    """Notification reads: whole passes over the application sequence in pages of `page`."""
    postgres_version: str
    rounds: list[EventsourcingRound]
    backends: list[BackendSummary]
    """esdb, then PostgreSQL: medians over the rounds."""
    ratios: PhaseRatios
    """Ratios of the medians: the figures to quote."""


class BenchReport(msgspec.Struct, kw_only=True):
    """Everything one `esdb bench` run printed, as machine-readable data.

    With several rounds, `appends` and `reads` are the per-path summaries over the rounds
    (medians), `append_ratio` and `read_ratio` the ratios of those medians, and `rounds` every
    round's own figures."""

    config: BenchConfig
    appends: list[AppendSummary] = msgspec.field(default_factory=list)
    append_ratio: Ratio | None = None
    append_round_ratios: list[float] = msgspec.field(default_factory=list)
    reads: list[ReadSummary] = msgspec.field(default_factory=list)
    read_ratio: Ratio | None = None
    read_round_ratios: list[float] = msgspec.field(default_factory=list)
    rounds: list[RoundFigures] = msgspec.field(default_factory=list)
    failover: FailoverReport | None = None
    live: LiveReport | None = None
    persistent: PersistentReport | None = None
    eventsourcing: EventsourcingReport | None = None
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


def latency_figures(path: str, seconds: list[float]) -> LatencyFigures:
    """p50/p90/p99/max/min of `seconds` (any order; may be negative) in ms."""
    ordered = sorted(seconds)
    return LatencyFigures(
        path=path,
        count=len(ordered),
        p50_ms=round(percentile(ordered, 50) * 1000, 3),
        p90_ms=round(percentile(ordered, 90) * 1000, 3),
        p99_ms=round(percentile(ordered, 99) * 1000, 3),
        max_ms=round(ordered[-1] * 1000, 3) if ordered else 0.0,
        min_ms=round(ordered[0] * 1000, 3) if ordered else 0.0,
    )


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


def median(values: list[float]) -> float:
    """The median of `values` (0 when empty)."""
    return float(statistics.median(values)) if values else 0.0


def summarize_appends(path: str, rounds: list[AppendFigures]) -> AppendSummary:
    """One append path over its rounds: medians, totals and spread."""
    codes: Counter[str] = Counter()
    for figures in rounds:
        codes.update(figures.error_codes)
    rates = [f.events_per_s for f in rounds]
    return AppendSummary(
        path=path,
        rounds=len(rounds),
        events=sum(f.events for f in rounds),
        errors=sum(f.errors for f in rounds),
        error_codes=dict(codes),
        events_per_s=round(median(rates), 1),
        min_events_per_s=min(rates, default=0.0),
        max_events_per_s=max(rates, default=0.0),
        p50_ms=round(median([f.p50_ms for f in rounds]), 3),
        p99_ms=round(median([f.p99_ms for f in rounds]), 3),
        max_ms=max((f.max_ms for f in rounds), default=0.0),
    )


def summarize_reads(path: str, rounds: list[ReadFigures]) -> ReadSummary:
    """One read path over its rounds: the median events/s and spread."""
    rates = [f.events_per_s for f in rounds]
    return ReadSummary(
        path=path,
        rounds=len(rounds),
        events=sum(f.events for f in rounds),
        events_per_s=round(median(rates), 1),
        min_events_per_s=min(rates, default=0.0),
        max_events_per_s=max(rates, default=0.0),
    )


def lag_figures(
    samples: list[LagSample], offered_rate: float, failed_samples: int = 0
) -> LagFigures:
    """Max and final lag of `samples` (in time order), and whether it stayed bounded: the
    mean of the last third at most the middle third's plus `LAG_GROWTH_ALLOWANCE_S` worth of
    offered appends."""
    lags = [s.lag for s in samples]
    third = len(lags) // 3
    middle = lags[third : len(lags) - third] if third else []
    last = lags[len(lags) - third :] if third else []
    middle_mean = statistics.fmean(middle) if middle else 0.0
    last_mean = statistics.fmean(last) if last else 0.0
    allowance = offered_rate * LAG_GROWTH_ALLOWANCE_S
    return LagFigures(
        samples=samples,
        max=max(lags, default=0),
        final=lags[-1] if lags else 0,
        max_undelivered=max((s.undelivered for s in samples), default=0),
        middle_mean=round(middle_mean, 1),
        last_mean=round(last_mean, 1),
        allowance=round(allowance, 1),
        bounded=last_mean <= middle_mean + allowance if third else None,
        failed_samples=failed_samples,
    )


def quotient(esdb: float, jetstream: float) -> float | None:
    """esdb / JetStream, rounded (None when JetStream's is 0)."""
    return round(esdb / jetstream, 2) if jetstream else None


def phase_figures(
    count: int, seconds: float, error_kinds: Counter[str] | None = None
) -> PhaseFigures:
    """The rate of one eventsourcing phase and what went wrong in it."""
    kinds = error_kinds or Counter()
    return PhaseFigures(
        count=count,
        seconds=round(seconds, 3),
        per_s=round(count / seconds, 1) if seconds > 0 else 0.0,
        errors=sum(kinds.values()),
        error_kinds=dict(kinds),
    )


def summarize_phase(rounds: list[PhaseFigures]) -> PhaseSummary:
    """One eventsourcing phase over its rounds: the median rate, spread and totals."""
    rates = [f.per_s for f in rounds]
    return PhaseSummary(
        count=sum(f.count for f in rounds),
        per_s=round(median(rates), 1),
        min_per_s=min(rates, default=0.0),
        max_per_s=max(rates, default=0.0),
        errors=sum(f.errors for f in rounds),
    )


def summarize_backend(backend: str, rounds: list[BackendRound]) -> BackendSummary:
    """One backend of the eventsourcing scenario over its rounds."""
    return BackendSummary(
        backend=backend,
        saves=summarize_phase([r.saves for r in rounds]),
        gets=summarize_phase([r.gets for r in rounds]),
        notifications=summarize_phase([r.notifications for r in rounds]),
    )


def phase_ratios(
    esdb: BackendRound | BackendSummary, postgres: BackendRound | BackendSummary, target: float
) -> PhaseRatios:
    """esdb / PostgreSQL in each phase, against `target`."""
    return PhaseRatios(
        saves=ratio(esdb.saves.per_s, postgres.saves.per_s, target),
        gets=ratio(esdb.gets.per_s, postgres.gets.per_s, target),
        notifications=ratio(esdb.notifications.per_s, postgres.notifications.per_s, target),
    )
