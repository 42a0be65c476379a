"""The human-readable form of a `BenchReport`: a few aligned tables."""

from __future__ import annotations

from itertools import pairwise

from esdb.benchmarks.figures import BenchReport, ProcessUsage, Ratio, ResourceSample


def format_report(report: BenchReport) -> str:
    """The whole report as text, one table per measured thing."""
    config = report.config
    stack = "own `esdb up`" if config.own_stack else "running stack"
    lines = [
        f"esdb bench: {config.events:,} events, {config.clients} clients, "
        f"durability {config.durability}, streams of {config.stream_length} events, "
        f"{config.event_bytes}-byte event bodies",
        f"stack: {stack} at {config.url} (nats-server {config.nats_server_version})",
    ]
    if report.appends:
        lines += ["", "appends: one event per request, expected version = the last one seen"]
        lines.append(
            f"{'path':<28}{'events':>9}{'errors':>8}{'events/s':>11}"
            f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        )
        for a in report.appends:
            lines.append(
                f"{a.path:<28}{a.events:>9,}{a.errors:>8}{a.events_per_s:>11,.0f}"
                f"{a.p50_ms:>9.2f}{a.p99_ms:>9.2f}{a.max_ms:>9.1f}"
            )
            if a.error_codes:
                codes = ", ".join(f"{code} x{n}" for code, n in sorted(a.error_codes.items()))
                lines.append(f"  errors: {codes}")
        if report.append_ratio is not None:
            lines.append(_ratio_line("esdb / jetstream events/s", report.append_ratio))
    if report.reads:
        lines += ["", f"reads: $all in pages of {config.read_page} vs a JetStream ordered consumer"]
        lines.append(f"{'path':<28}{'events':>9}{'events/s':>11}{'seconds':>9}")
        for r in report.reads:
            lines.append(f"{r.path:<28}{r.events:>9,}{r.events_per_s:>11,.0f}{r.seconds:>9.2f}")
        if report.read_ratio is not None:
            lines.append(_ratio_line("esdb / jetstream events/s", report.read_ratio))
    if any(sample.processes for sample in report.resources):
        lines += ["", *_memory_table(report.resources), "", *_cpu_table(report.resources)]
    return "\n".join(lines)


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


def _table(
    title: str, samples: list[ResourceSample], rows: list[tuple[str, list[str]]]
) -> list[str]:
    width = max(14, *(len(s.label) + 2 for s in samples))
    first = max(15, *(len(name) + 1 for name, _ in rows))
    lines = [title, f"{'':<{first}}" + "".join(f"{s.label:>{width}}" for s in samples)]
    lines += [f"{name:<{first}}" + "".join(f"{c:>{width}}" for c in cells) for name, cells in rows]
    return lines


def _memory_table(samples: list[ResourceSample]) -> list[str]:
    rows = [("events stored", [f"{s.events_stored:,}" for s in samples])]
    for name in _process_names(samples):
        cells = []
        for sample in samples:
            found = _find(sample, name)
            cells.append(
                "-"
                if found is None
                else f"{found.rss_kib / 1024:.1f} / {found.anon_kib / 1024:.1f}"
            )
        rows.append((name, cells))
    return _table(
        "memory after each phase: RSS MiB / anonymous MiB "
        "(anonymous = heap; RSS also counts mapped LMDB files)",
        samples,
        rows,
    )


def _cpu_table(samples: list[ResourceSample]) -> list[str]:
    phases = samples[1:]
    rows = [("events", [f"{s.phase_events:,}" for s in phases])]
    for name in _process_names(samples):
        cells = []
        for before, after in pairwise(samples):
            start, end = _find(before, name), _find(after, name)
            if start is None or end is None or start.pid != end.pid or not after.phase_events:
                cells.append("-")
            else:
                cells.append(f"{(end.cpu_s - start.cpu_s) / after.phase_events * 1e6:,.0f}")
        rows.append((name, cells))
    return _table("cpu per event in each phase: µs (user + system)", phases, rows)


def _find(sample: ResourceSample, name: str) -> ProcessUsage | None:
    return next((p for p in sample.processes if p.process == name), None)
