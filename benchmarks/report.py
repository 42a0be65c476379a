"""The human-readable form of a `BenchReport`: a few aligned tables."""

from __future__ import annotations

from esdb.benchmarks.figures import BenchReport, MemorySample, Ratio


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
    if report.memory and any(sample.processes for sample in report.memory):
        lines += ["", *_memory_table(report.memory)]
    return "\n".join(lines)


def _ratio_line(what: str, ratio: Ratio) -> str:
    verdict = "met" if ratio.met else "NOT met"
    return f"{what}: {ratio.value:.2f}x (target >= {ratio.target:g}x: {verdict})"


def _memory_table(samples: list[MemorySample]) -> list[str]:
    names: list[str] = []
    for sample in samples:
        for process in sample.processes:
            if process.process not in names:
                names.append(process.process)
    width = max(14, *(len(s.label) + 2 for s in samples))
    first = max(14, *(len(name) + 1 for name in names))
    lines = [
        "memory: RSS MiB / anonymous MiB (heap; RSS also counts mapped LMDB and JetStream files)",
        f"{'process':<{first}}" + "".join(f"{s.label:>{width}}" for s in samples),
        f"{'events stored':<{first}}" + "".join(f"{s.events_stored:>{width},}" for s in samples),
    ]
    for name in names:
        cells = []
        for sample in samples:
            found = next((p for p in sample.processes if p.process == name), None)
            cell = (
                "-"
                if found is None
                else f"{found.rss_kib / 1024:.1f} / {found.anon_kib / 1024:.1f}"
            )
            cells.append(f"{cell:>{width}}")
        lines.append(f"{name:<{first}}" + "".join(cells))
    return lines
