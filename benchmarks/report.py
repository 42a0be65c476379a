"""The human-readable form of a `BenchReport`: a few aligned tables."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

from esdb.benchmarks.figures import (
    CLIENT_ROW,
    AppendFigures,
    BenchReport,
    DeliveryFigures,
    EventsourcingReport,
    FailoverReport,
    LiveReport,
    OpenLoopFigures,
    PersistentReport,
    PhaseFigures,
    PhaseRatios,
    ProcessUsage,
    Ratio,
    ResourceSample,
)


def format_report(report: BenchReport) -> str:
    """The whole report as text, one table per measured thing."""
    config = report.config
    stack = "own `esdb up`" if config.own_stack else "running stack"
    if config.scenario in ("live", "persistent"):
        head = (
            f"esdb bench {config.scenario}: {config.nodes} node(s), durability "
            f"{config.durability}, {config.event_bytes}-byte event bodies, one event per append"
        )
    elif config.scenario == "eventsourcing":
        head = (
            f"esdb bench eventsourcing: {config.events:,} aggregates x {config.rounds} rounds, "
            f"{config.clients} threads, esdb durability {config.durability}, {config.nodes} "
            "node(s), against PostgreSQL (fsync on)"
        )
    elif config.scenario == "failover":
        head = (
            f"esdb bench failover: {config.nodes} nodes, {config.clients} clients, "
            f"durability {config.durability}, {config.event_bytes}-byte event bodies"
        )
    else:
        head = (
            f"esdb bench: {config.events:,} events x {config.rounds} rounds, "
            f"{config.clients} clients, durability {config.durability}, {config.nodes} node(s) "
            f"(JetStream R{config.jetstream_replicas}), streams of {config.stream_length} "
            f"events, {config.event_bytes}-byte event bodies"
        )
    lines = [head, f"stack: {stack} at {config.url} (nats-server {config.nats_server_version})"]
    if config.placement:
        lines.append(
            "placement: " + "; ".join(f"{what} {where}" for what, where in config.placement.items())
        )
    lines += _appends(report)
    lines += _reads(report)
    if report.failover is not None:
        lines += ["", *_failover(report.failover)]
    if report.live is not None:
        lines += ["", *_live(report.live)]
    if report.persistent is not None:
        lines += ["", *_persistent(report.persistent)]
    if report.eventsourcing is not None:
        lines += ["", *format_eventsourcing(report.eventsourcing)]
    if len(report.resources) > 1 and any(sample.processes for sample in report.resources):
        lines += ["", *_memory_table(report.resources), "", *_cpu_table(report.resources)]
        messages = _messages_table(report.resources)
        if messages:
            lines += ["", *messages]
        budget = _budget_table(report)
        if budget:
            lines += ["", *budget]
    return "\n".join(line.rstrip() for line in lines)


def _appends(report: BenchReport) -> list[str]:
    if not report.appends:
        return []
    lines = ["", "appends: one event per request, expected version = the last one seen"]
    if len(report.rounds) > 1:
        lines.append(
            f"{'round':<6}{'path':<28}{'events':>9}{'errors':>8}{'events/s':>11}"
            f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'ratio':>8}"
        )
        for r in report.rounds:
            for i, a in enumerate(r.appends):
                share = f"{r.append_ratio.value:.2f}x" if i == 0 and r.append_ratio else ""
                lines.append(
                    f"{r.round if i == 0 else '':<6}{a.path:<28}{a.events:>9,}{a.errors:>8}"
                    f"{a.events_per_s:>11,.0f}{a.p50_ms:>9.2f}{a.p99_ms:>9.2f}{a.max_ms:>9.1f}"
                    f"{share:>8}"
                )
        lines += ["", f"appends, median of {len(report.rounds)} rounds (events and errors: total)"]
    lines.append(
        f"{'path':<28}{'events':>9}{'errors':>8}{'events/s':>11}{'min-max':>16}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    )
    for s in report.appends:
        spread = f"{s.min_events_per_s:,.0f}-{s.max_events_per_s:,.0f}"
        lines.append(
            f"{s.path:<28}{s.events:>9,}{s.errors:>8}{s.events_per_s:>11,.0f}{spread:>16}"
            f"{s.p50_ms:>9.2f}{s.p99_ms:>9.2f}{s.max_ms:>9.1f}"
        )
        if s.error_codes:
            codes = ", ".join(f"{code} x{n}" for code, n in sorted(s.error_codes.items()))
            lines.append(f"  errors: {codes}")
    if report.append_ratio is not None:
        lines.append(
            _ratio_line("esdb / jetstream events/s (ratio of medians)", report.append_ratio)
        )
        if len(report.append_round_ratios) > 1:
            lines.append(f"per round: {_ratios(report.append_round_ratios)}")
    return lines


def _reads(report: BenchReport) -> list[str]:
    if not report.reads:
        return []
    config = report.config
    lines = ["", f"reads: $all in pages of {config.read_page} vs a JetStream ordered consumer"]
    if len(report.rounds) > 1:
        lines.append(f"{'round':<6}{'path':<28}{'events':>9}{'events/s':>11}{'seconds':>9}")
        for r in report.rounds:
            for i, f in enumerate(r.reads):
                lines.append(
                    f"{r.round if i == 0 else '':<6}{f.path:<28}{f.events:>9,}"
                    f"{f.events_per_s:>11,.0f}{f.seconds:>9.2f}"
                )
        lines += ["", f"reads, median of {len(report.rounds)} rounds (events: total)"]
    lines.append(f"{'path':<28}{'events':>9}{'events/s':>11}{'min-max':>18}")
    for s in report.reads:
        spread = f"{s.min_events_per_s:,.0f}-{s.max_events_per_s:,.0f}"
        lines.append(f"{s.path:<28}{s.events:>9,}{s.events_per_s:>11,.0f}{spread:>18}")
    if report.read_ratio is not None:
        lines.append(_ratio_line("esdb / jetstream events/s (ratio of medians)", report.read_ratio))
        if len(report.read_round_ratios) > 1:
            lines.append(f"per round: {_ratios(report.read_round_ratios)}")
    return lines


def _ratios(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}x" for v in values)


def _failover(failover: FailoverReport) -> list[str]:
    lines = [
        f"failover: kill -9 of the leader's writer under {failover.clients} clients' appends "
        f"(timeout_ms {failover.timeout_ms}, retries with the same event ids); seconds from "
        "the kill",
        f"{'run':<5}{'killed':<8}{'new leader':<12}{'lease':>7}{'1st ack':>9}{'restart':>9}"
        f"{'settled':>9}{'ev/s before':>13}  retries after the kill",
    ]
    for run in failover.runs:
        retries = ", ".join(f"{code} x{n}" for code, n in sorted(run.retry_codes.items()))
        lines.append(
            f"{run.run:<5}{run.killed:<8}{run.new_leader or '-':<12}{_s(run.lease_taken_s):>7}"
            f"{_s(run.first_ack_s):>9}{_s(run.restart_s):>9}{_s(run.settled_s):>9}"
            f"{run.events_per_s_before:>13,.0f}  {retries or '-'}"
        )
        if run.anomalies:
            odd = ", ".join(f"{code} x{n}" for code, n in sorted(run.anomalies.items()))
            lines.append(f"  anomalies: {odd}")
    verdict = "met" if failover.met else "NOT met"
    lines.append(
        f"median kill -> first ack: {_s(failover.median_first_ack_s)} s "
        f"(target <= {failover.target_s:g} s: {verdict}); median kill -> lease taken: "
        f"{_s(failover.median_lease_taken_s)} s"
    )
    return lines


def _rate_source(offered: float, max_rate: float | None, probe: AppendFigures | None) -> str:
    if probe is None or max_rate is None:
        return "--rate"
    return (
        f"{offered / max_rate:.0%} of {max_rate:,.0f} events/s, the rate of {probe.events:,} "
        f"closed-loop appends (p50 {probe.p50_ms:.1f} ms, p99 {probe.p99_ms:.1f} ms)"
    )


def _sent(load: OpenLoopFigures) -> list[str]:
    lines = [
        f"sent {load.planned:,} in {load.send_seconds:.2f} s ({load.sent_rate:,.0f}/s; sends "
        f"behind their slot p99 {load.schedule_lag_p99_ms:.1f} ms, max "
        f"{load.schedule_lag_max_ms:.1f} ms; up to {load.max_in_flight} in flight); appended "
        f"{load.appended:,}, errors {load.errors}"
    ]
    if load.error_codes:
        codes = ", ".join(f"{code} x{n}" for code, n in sorted(load.error_codes.items()))
        lines.append(f"  errors: {codes}")
    return lines


def _live(live: LiveReport) -> list[str]:
    source = _rate_source(live.offered_rate, live.max_rate, live.probe)
    lines = [
        f"live: open-loop appends at {live.offered_rate:,.0f} events/s ({source}); "
        f"subscriber on {live.subject}, a connection of its own",
        *_sent(live),
    ]
    lines.append(
        f"received live {live.received:,}: missing {live.missing}, duplicates "
        f"{live.duplicates}, wrong subject {live.wrong_subject}, other messages {live.foreign}, "
        f"slow consumer {live.slow_consumer}"
    )
    lines.append(
        f"{'latency':<32}{'count':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'min ms':>9}"
    )
    for f in live.latencies:
        lines.append(
            f"{f.path:<32}{f.count:>8,}{f.p50_ms:>9.2f}{f.p90_ms:>9.2f}{f.p99_ms:>9.2f}"
            f"{f.max_ms:>9.1f}{f.min_ms:>9.2f}"
        )
    verdict = "met" if live.met else "NOT met"
    first = live.latencies[0] if live.latencies else None
    p99 = f"{first.p99_ms:.2f} ms" if first is not None else "-"
    lines.append(
        f"p99 append sent -> live message: {p99} (target <= {live.target_p99_ms:g} ms, "
        f"none missing: {verdict})"
    )
    return lines


def _persistent(persistent: PersistentReport) -> list[str]:
    sides = persistent.sides
    if not sides:
        return []
    offered = sides[0].offered_rate
    source = _rate_source(offered, persistent.max_rate, persistent.probe)
    lines = [
        f"persistent: open-loop appends at {offered:,.0f} events/s ({source}), to each side in "
        f"turn; {persistent.consumers} consumers per side, each acking every delivery",
    ]
    for side in sides:
        lines += [f"{side.path}: {side.consumer}", *("  " + line for line in _sent(side))]
    rows: list[tuple[str, list[str], str]] = [
        ("delivered (distinct positions)", [f"{s.delivered:,}" for s in sides], ""),
        ("missing", [f"{s.missing:,}" for s in sides], ""),
        ("deliveries / redeliveries", [f"{s.deliveries:,} / {s.redeliveries}" for s in sides], ""),
        ("duplicates / foreign", [f"{s.duplicates} / {s.foreign}" for s in sides], ""),
        (
            "deliveries/s",
            [f"{s.deliveries_per_s:,.0f}" for s in sides],
            _x(persistent.ratios.deliveries_per_s),
        ),
        ("drain after the last send s", [f"{s.drain_s:.2f}" for s in sides], ""),
    ]
    for index, name in enumerate(("sent -> delivered", "reply -> delivered", "sent -> reply")):
        rows.append(
            (
                f"{name} p50 / p99 ms",
                [
                    f"{s.latencies[index].p50_ms:.1f} / {s.latencies[index].p99_ms:.1f}"
                    for s in sides
                ],
                "",
            )
        )
    rows += [
        ("sent -> delivered max ms", [f"{s.latencies[0].max_ms:.1f}" for s in sides], ""),
        ("slot -> delivered p99 ms", [f"{s.latencies[3].p99_ms:.1f}" for s in sides], ""),
        ("lag max / final", [f"{s.lag.max:,} / {s.lag.final:,}" for s in sides], ""),
        (
            "lag mean middle / last third",
            [f"{s.lag.middle_mean:,.0f} / {s.lag.last_mean:,.0f}" for s in sides],
            "",
        ),
        ("lag bounded", [_bounded(s) for s in sides], ""),
        (
            "in flight max",
            [f"{max((x.in_flight for x in s.lag.samples), default=0):,}" for s in sides],
            "",
        ),
        ("undelivered max", [f"{s.lag.max_undelivered:,}" for s in sides], ""),
    ]
    width = max(22, *(len(s.path) + 2 for s in sides))
    lines += [
        "",
        f"{'':<32}" + "".join(f"{s.path:>{width}}" for s in sides) + f"{'esdb / js':>12}",
        *(
            f"{name:<32}" + "".join(f"{cell:>{width}}" for cell in cells) + f"{ratio:>12}"
            for name, cells, ratio in rows
        ),
    ]
    ratios = persistent.ratios
    lines.append(
        f"esdb / jetstream: deliveries/s {_x(ratios.deliveries_per_s)}, sent -> delivered p50 "
        f"{_x(ratios.p50_ms)}, p99 {_x(ratios.p99_ms)}, max lag {_x(ratios.max_lag)}"
    )
    lines += ["", *_lag_table(sides)]
    return lines


ES_PHASES = ("saves", "gets", "notifications")
ES_UNITS = {"saves": "aggregates/s", "gets": "gets/s", "notifications": "notifications/s"}


def format_eventsourcing(es: EventsourcingReport) -> list[str]:
    """Every round's rates and ratios, then the medians per backend and their ratios."""
    lines = [
        f"eventsourcing: a dog school on esdb and on PostgreSQL {es.postgres_version}; saves: "
        f"{es.aggregates:,} aggregates of {es.events_per_aggregate} events, one save each, "
        f"from {es.threads} threads (after {es.warmup} untimed); gets: {es.gets:,} "
        f"repository.get from {es.threads} threads; notifications: {es.passes} passes over "
        f"the application sequence in pages of {es.page:,}, one thread",
    ]
    if len(es.rounds) > 1:
        lines.append(
            f"{'round':<6}{'backend':<12}"
            + "".join(f"{ES_UNITS[p]:>17}" for p in ES_PHASES)
            + f"{'errors':>8}"
        )
        for r in es.rounds:
            for i, b in enumerate(r.backends):
                phases = [getattr(b, p) for p in ES_PHASES]
                lines.append(
                    f"{r.round if i == 0 else '':<6}{b.backend:<12}"
                    + "".join(f"{f.per_s:>17,.0f}" for f in phases)
                    + f"{sum(f.errors for f in phases):>8}"
                )
                lines += _phase_errors(b.backend, phases)
            lines.append(f"{'':<6}{'ratio':<12}{_ratio_cells(r.ratios)}")
        lines += ["", f"eventsourcing, median of {len(es.rounds)} rounds (min-max)"]
    lines.append(f"{'backend':<12}" + "".join(f"{ES_UNITS[p]:>28}" for p in ES_PHASES))
    for s in es.backends:
        cells = []
        for phase in ES_PHASES:
            f = getattr(s, phase)
            spread = f"({f.min_per_s:,.0f}-{f.max_per_s:,.0f})"
            cells.append(f"{f.per_s:,.0f} {spread}")
        lines.append(f"{s.backend:<12}" + "".join(f"{c:>28}" for c in cells))
    lines.append(
        f"{'esdb / pg':<12}" + "".join(f"{_x(getattr(es.ratios, p).value):>28}" for p in ES_PHASES)
    )
    for phase in ES_PHASES:
        lines.append(_ratio_line(f"esdb / postgresql {ES_UNITS[phase]}", getattr(es.ratios, phase)))
    errors = sum(getattr(s, p).errors for s in es.backends for p in ES_PHASES)
    lines.append(
        f"errors (failed saves or gets, aggregates got back unlike the saved ones, notification "
        f"passes short of the events saved): {errors}"
    )
    return lines


def _ratio_cells(ratios: PhaseRatios) -> str:
    return "".join(f"{getattr(ratios, p).value:>16.2f}x" for p in ES_PHASES)


def _phase_errors(backend: str, phases: list[PhaseFigures]) -> list[str]:
    kinds = [
        f"{phase} {kind} x{n}"
        for phase, f in zip(ES_PHASES, phases, strict=True)
        for kind, n in sorted(f.error_kinds.items())
    ]
    return [f"  {backend} errors: {', '.join(kinds)}"] if kinds else []


def _bounded(side: DeliveryFigures) -> str:
    if side.lag.bounded is None:
        return "- (< 3 samples)"
    return f"{'yes' if side.lag.bounded else 'NO'} (+{side.lag.allowance:,.0f})"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _lag_table(sides: list[DeliveryFigures]) -> list[str]:
    """The lag samples side by side, one row a second."""
    lines = [
        "lag once a second: lag (server) / in flight / undelivered (acknowledged appends not yet "
        "delivered)",
        f"{'#':>4}" + "".join(f"{s.path:>32}" for s in sides),
    ]
    rows = max(len(s.lag.samples) for s in sides)
    for row in range(rows):
        cells = []
        for side in sides:
            samples = side.lag.samples
            sample = samples[row] if row < len(samples) else None
            cells.append(
                "-"
                if sample is None
                else f"{sample.lag:,} / {sample.in_flight:,} / {sample.undelivered:,}"
            )
        lines.append(f"{row + 1:>4}" + "".join(f"{cell:>32}" for cell in cells))
    return lines


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ratio_line(what: str, ratio: Ratio) -> str:
    verdict = "met" if ratio.met else "NOT met"
    return f"{what}: {ratio.value:.2f}x (target >= {ratio.target:g}x: {verdict})"


def _process_names(samples: list[ResourceSample]) -> list[str]:
    names: list[str] = []
    for sample in samples:
        for process in sample.processes:
            if process.process not in names:
                names.append(process.process)
    return names


def _table(title: str, labels: list[str], rows: list[tuple[str, list[str]]]) -> list[str]:
    width = max(14, *(len(label) + 2 for label in labels))
    first = max(15, *(len(name) + 1 for name, _ in rows))
    lines = [title, f"{'':<{first}}" + "".join(f"{label:>{width}}" for label in labels)]
    lines += [f"{name:<{first}}" + "".join(f"{c:>{width}}" for c in cells) for name, cells in rows]
    return lines


def _phase(label: str) -> str:
    """The phase of a sample label without its round ("r2 esdb read" -> "esdb read")."""
    first, _, rest = label.partition(" ")
    return rest if rest and first[:1] == "r" and first[1:].isdigit() else label


def _memory_table(samples: list[ResourceSample]) -> list[str]:
    """Memory at the start and after the last round's phases."""
    last: dict[str, ResourceSample] = {}
    for sample in samples:
        last[_phase(sample.label)] = sample
    shown = list(last.values())
    rows = [("events stored", [f"{s.events_stored:,}" for s in shown])]
    for name in _process_names(samples):
        cells = []
        for sample in shown:
            found = _find(sample, name)
            cells.append(
                "-"
                if found is None
                else f"{found.rss_kib / 1024:.1f} / {found.anon_kib / 1024:.1f}"
            )
        rows.append((name, cells))
    rounds = " of the last round" if len(shown) < len(samples) else ""
    return _table(
        f"memory after each phase{rounds}: RSS MiB / anonymous MiB "
        "(anonymous = heap; RSS also counts mapped LMDB files)",
        [_phase(s.label) for s in shown],
        rows,
    )


def _cpu_table(samples: list[ResourceSample]) -> list[str]:
    """CPU time per event of each phase, summed over the rounds (a process that restarted
    during a phase is left out of that phase)."""
    phases, events, spent = _per_event(samples, lambda usage: usage.cpu_s * 1e6)
    rows = [("events", [f"{events[phase]:,}" for phase in phases])]
    rows += [
        (name, [f"{by_phase[phase]:,.0f}" if phase in by_phase else "-" for phase in phases])
        for name, by_phase in spent.items()
    ]
    rounds = len(samples[1:]) // max(1, len(phases))
    over = f", over {rounds} rounds" if rounds > 1 else ""
    return _table(f"cpu per event in each phase{over}: µs (user + system)", phases, rows)


def _messages_table(samples: list[ResourceSample]) -> list[str]:
    """NATS messages (in plus out) per event of each phase, on each server."""
    phases, _, counted = _per_event(samples, lambda usage: usage.messages)
    if not counted:
        return []
    rows = [
        (name, [f"{by_phase[phase]:.2f}" if phase in by_phase else "-" for phase in phases])
        for name, by_phase in counted.items()
    ]
    rows.append(
        (
            "all servers",
            [f"{sum(c.get(phase, 0) for c in counted.values()):.2f}" for phase in phases],
        )
    )
    return _table(
        "nats messages per event in each phase (in + out, from each server's varz)", phases, rows
    )


def _per_event(
    samples: list[ResourceSample], value: Callable[[ProcessUsage], float | None]
) -> tuple[list[str], dict[str, int], dict[str, dict[str, float]]]:
    """The phases, the events of each, and per process and phase how much `value` grew per
    event (summed over rounds; a process that restarted in a phase, or has no value, is
    left out of it)."""
    phases: list[str] = []
    events: dict[str, int] = {}
    for after in samples[1:]:
        phase = _phase(after.label)
        if phase not in phases:
            phases.append(phase)
        events[phase] = events.get(phase, 0) + after.phase_events
    grown: dict[str, dict[str, float]] = {}
    for name in _process_names(samples):
        totals: dict[str, tuple[float, int]] = {}
        for before, after in pairwise(samples):
            start, end = _find(before, name), _find(after, name)
            if start is None or end is None or start.pid != end.pid or not after.phase_events:
                continue
            first, last = value(start), value(end)
            if first is None or last is None:
                continue
            total, count = totals.get(_phase(after.label), (0.0, 0))
            totals[_phase(after.label)] = (total + last - first, count + after.phase_events)
        if totals:
            grown[name] = {phase: total / count for phase, (total, count) in totals.items()}
    return phases, events, grown


APPEND_PHASE = "esdb appends"
# CPU per appended event each process may spend (µs, user + system): what it takes for a
# three-node cluster to keep up with the JetStream R3 it is built on on two cores.
BUDGET_US = {
    "bench client": 44.0,
    "writer leader": 40.0,
    "each follower writer": 15.0,
    "leader emitter": 12.0,
    "gateway": 0.0,
    "nats-servers, summed": 70.0,
}


def _budget_table(report: BenchReport) -> list[str]:
    """CPU per event of the esdb appends phase against `BUDGET_US`, marked within or over."""
    phases, _, spent = _per_event(report.resources, lambda usage: usage.cpu_s * 1e6)
    if APPEND_PHASE not in phases:
        return []
    at = {
        name: by_phase[APPEND_PHASE] for name, by_phase in spent.items() if APPEND_PHASE in by_phase
    }
    leader = report.config.placement.get("esdb writer leader", "node1")
    measured: list[tuple[str, str, float]] = []  # budget row, process, µs
    for name, cpu in at.items():
        if name == CLIENT_ROW or name == "gateway":
            measured.append((name, name, cpu))
        elif name == f"writer-{leader}":
            measured.append(("writer leader", name, cpu))
        elif name.startswith("writer-"):
            measured.append(("each follower writer", name, cpu))
        elif name == f"emitter-{leader}":
            measured.append(("leader emitter", name, cpu))
    servers = [cpu for name, cpu in at.items() if name.startswith("nats-server")]
    if servers:
        measured.append(("nats-servers, summed", f"{len(servers)} servers", sum(servers)))
    rows = [
        (
            f"{row} ({process})",
            [
                f"{cpu:,.0f}",
                f"{BUDGET_US[row]:,.0f}",
                # As shown: a gateway's 0.3 µs of idle ticks is within a budget of 0.
                "within" if round(cpu) <= BUDGET_US[row] else "OVER",
            ],
        )
        for row, process, cpu in measured
    ]
    return _table(
        f"cpu per event against the budget, {APPEND_PHASE}: µs", ["measured", "budget", ""], rows
    )


def _find(sample: ResourceSample, name: str) -> ProcessUsage | None:
    return next((p for p in sample.processes if p.process == name), None)
