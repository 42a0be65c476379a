"""Alternating rounds: esdb, then JetStream, then again, on the same stack with fresh streams.

The machine the benchmark runs on is noisy: the same phase, run twice, can differ by a third.
One esdb phase against one JetStream phase minutes apart gives a ratio that mostly measures
the noise. Alternating the two sides round by round exposes both to the same background, and
the median of each side over the rounds (with every round's own ratio beside it) shows how
much of a difference is real.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from esdb.benchmarks.appends import (
    AppendPlan,
    AppendRun,
    Progress,
    esdb_appends,
    jetstream_appends,
    jetstream_run_subjects,
)
from esdb.benchmarks.figures import (
    BenchReport,
    RoundFigures,
    ratio,
    summarize_appends,
    summarize_reads,
)
from esdb.benchmarks.reads import esdb_read_all, jetstream_ordered_read
from esdb.benchmarks.stack import BenchStack

WithProgress = Callable[[Progress, Coroutine[Any, Any, AppendRun]], Coroutine[Any, Any, AppendRun]]

ESDB_APPEND = "esdb append"
JETSTREAM_APPEND = "jetstream publish (OCC)"


@dataclass(frozen=True)
class RoundsPlan:
    """What every round does."""

    run_id: str
    rounds: int
    events: int
    clients: int
    stream_length: int
    timeout: float
    store: str
    read_page: int
    append_target: float
    read_target: float
    report_appends: bool
    reads: bool


async def run_rounds(
    nc: NatsClient,
    js: JetStreamContext,
    stack: BenchStack,
    plan: RoundsPlan,
    payload: bytes,
    report: BenchReport,
    say: Callable[[str], None],
    with_progress: WithProgress,
) -> None:
    """Run `plan.rounds` rounds into `report`: per round, esdb appends, JetStream appends,
    then (if asked) esdb `read_all` and the ordered consumer over what that round wrote. Each
    round writes to streams (and subjects) of its own. Then the medians over the rounds."""
    stored = 0

    def append_plan(label: str, events: int) -> AppendPlan:
        return AppendPlan.for_phase(plan, label, events)

    for number in range(1, plan.rounds + 1):
        tag = f"r{number}" if plan.rounds > 1 else ""
        prefix = f"round {number}/{plan.rounds}: " if plan.rounds > 1 else ""
        # One untimed append per client first: connections, caches and streams warm up.
        warmup = append_plan(f"{tag}w", plan.clients)
        timed = append_plan(f"{tag}t", plan.events)

        say(f"{prefix}esdb: {plan.events:,} appends from {plan.clients} clients...")
        esdb_warm = await esdb_appends(nc, plan.store, warmup, payload, Progress("", 0))
        progress = Progress("esdb append", plan.events)
        esdb_run = await with_progress(
            progress, esdb_appends(nc, plan.store, timed, payload, progress)
        )
        esdb_round = esdb_warm.log.events + esdb_run.log.events
        stored += esdb_round
        report.resources.append(await stack.sample(_label(tag, "esdb appends"), esdb_round, stored))

        say(f"{prefix}jetstream: {plan.events:,} publishes from {plan.clients} clients...")
        js_warm = await jetstream_appends(js, warmup, payload, Progress("", 0))
        progress = Progress("jetstream publish", plan.events)
        js_run = await with_progress(progress, jetstream_appends(js, timed, payload, progress))
        js_round = js_warm.log.events + js_run.log.events
        report.resources.append(await stack.sample(_label(tag, "js appends"), js_round, stored))

        figures = RoundFigures(round=number)
        if plan.report_appends:
            esdb_figures = esdb_run.log.figures(ESDB_APPEND, esdb_run.seconds)
            js_figures = js_run.log.figures(JETSTREAM_APPEND, js_run.seconds)
            figures.appends = [esdb_figures, js_figures]
            figures.append_ratio = ratio(
                esdb_figures.events_per_s, js_figures.events_per_s, plan.append_target
            )
            say(
                f"{prefix}esdb {esdb_figures.events_per_s:,.0f} events/s, jetstream "
                f"{js_figures.events_per_s:,.0f} events/s: {figures.append_ratio.value:.2f}x"
            )

        if plan.reads:
            read_timeout = plan.timeout + esdb_round / 1000
            say(f"{prefix}esdb: read_all of {esdb_round:,} events in pages of {plan.read_page}...")
            esdb_read = await esdb_read_all(
                nc,
                plan.store,
                start=_first(esdb_warm, esdb_run),
                events=esdb_round,
                page=plan.read_page,
                timeout=read_timeout,
                min_position=_last(esdb_warm, esdb_run),
            )
            report.resources.append(
                await stack.sample(_label(tag, "esdb read"), esdb_read.events, stored)
            )
            say(f"{prefix}jetstream: ordered consumer over {js_round:,} messages...")
            js_read = await jetstream_ordered_read(
                js,
                jetstream_run_subjects(plan.run_id),
                start=_first(js_warm, js_run),
                events=js_round,
                timeout=read_timeout,
            )
            report.resources.append(
                await stack.sample(_label(tag, "js read"), js_read.events, stored)
            )
            figures.reads = [esdb_read, js_read]
            figures.read_ratio = ratio(
                esdb_read.events_per_s, js_read.events_per_s, plan.read_target
            )
        report.rounds.append(figures)

    _summarize(report, plan)


def _summarize(report: BenchReport, plan: RoundsPlan) -> None:
    """Medians over the rounds, the ratio of the medians, and every round's own ratio."""
    rounds = report.rounds
    if plan.report_appends:
        esdb = summarize_appends(ESDB_APPEND, [r.appends[0] for r in rounds])
        js = summarize_appends(JETSTREAM_APPEND, [r.appends[1] for r in rounds])
        report.appends = [esdb, js]
        report.append_ratio = ratio(esdb.events_per_s, js.events_per_s, plan.append_target)
        report.append_round_ratios = [r.append_ratio.value for r in rounds if r.append_ratio]
    if plan.reads:
        esdb_reads = summarize_reads("esdb read_all", [r.reads[0] for r in rounds])
        js_reads = summarize_reads("jetstream ordered consumer", [r.reads[1] for r in rounds])
        report.reads = [esdb_reads, js_reads]
        report.read_ratio = ratio(esdb_reads.events_per_s, js_reads.events_per_s, plan.read_target)
        report.read_round_ratios = [r.read_ratio.value for r in rounds if r.read_ratio]


def _label(tag: str, phase: str) -> str:
    return f"{tag} {phase}" if tag else phase


def _first(*runs: AppendRun) -> int:
    """Where the earliest of `runs` started writing (1 when nothing was written)."""
    return min((run.first for run in runs if run.first is not None), default=1)


def _last(*runs: AppendRun) -> int | None:
    """Where the latest of `runs` wrote last (None when nothing was written)."""
    return max((run.last for run in runs if run.last is not None), default=None)
