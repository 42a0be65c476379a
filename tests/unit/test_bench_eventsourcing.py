"""The eventsourcing scenario's pure parts: its options, the phases on the library's own
in-memory persistence module, medians and ratios, and the report."""

from __future__ import annotations

import argparse
from collections import Counter

import msgspec

from esdb.benchmarks.cli import BenchOptions, add_bench_arguments
from esdb.benchmarks.es_app import (
    EVENTS_PER_AGGREGATE,
    MISMATCH,
    DogSchool,
    run_gets,
    run_notifications,
    run_saves,
)
from esdb.benchmarks.figures import (
    BackendRound,
    BenchConfig,
    BenchReport,
    EventsourcingReport,
    EventsourcingRound,
    phase_figures,
    phase_ratios,
    summarize_backend,
)
from esdb.benchmarks.report import format_report

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


def _options(*argv: str) -> BenchOptions:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return BenchOptions.from_args(parser.parse_args(list(argv)))


def _round(backend: str, saves: float, gets: float, notifications: float) -> BackendRound:
    return BackendRound(
        backend=backend,
        saves=phase_figures(int(saves), 1.0),
        gets=phase_figures(int(gets), 1.0),
        notifications=phase_figures(int(notifications), 1.0),
    )


def test_eventsourcing_defaults_to_a_thousand_aggregates_from_eight_threads() -> None:
    options = _options("--scenario", "eventsourcing")
    assert (options.events, options.threads, options.read_page) == (1000, 8, 1000)
    assert _options("--scenario", "eventsourcing", "--events", "50").events == 50
    assert _options("--scenario", "append").events == 20_000


def test_phases_save_get_and_read_back_every_aggregate() -> None:
    school = DogSchool(env=POPO)
    saved, saves = run_saves(school, 20, 3, "t")
    assert (saves.count, saves.errors, len(saved)) == (20, 0, 20)
    gets = run_gets(school, saved, 20, 3)
    assert (gets.count, gets.errors) == (20, 0)
    read = run_notifications(school.recorder, 20 * EVENTS_PER_AGGREGATE, page=7, passes=2)
    assert (read.count, read.errors) == (2 * 20 * EVENTS_PER_AGGREGATE, 0)


def test_gets_visit_every_saved_aggregate_and_compare_it() -> None:
    school = DogSchool(env=POPO)
    saved, _ = run_saves(school, 12, 2, "t")
    saved[5].add_trick("not saved")  # now unlike the stored one: must be caught
    gets = run_gets(school, saved, 12, 4)
    assert (gets.count, gets.errors, gets.error_kinds) == (11, 1, {MISMATCH: 1})


def test_a_notification_pass_short_of_the_events_saved_is_an_error() -> None:
    school = DogSchool(env=POPO)
    run_saves(school, 3, 1, "t")
    read = run_notifications(school.recorder, 3 * EVENTS_PER_AGGREGATE + 1, page=5, passes=3)
    assert (read.errors, read.error_kinds) == (3, {MISMATCH: 3})


def test_phase_figures_rate_and_errors() -> None:
    figures = phase_figures(300, 1.5, Counter({"OperationalError": 2}))
    assert (figures.per_s, figures.errors) == (200.0, 2)
    assert phase_figures(5, 0.0).per_s == 0.0


def test_medians_and_ratios_over_rounds() -> None:
    esdb = [
        _round("esdb", 400, 900, 5000),
        _round("esdb", 600, 1500, 9000),
        _round("esdb", 500, 1000, 7000),
    ]
    pg = [_round("postgresql", 500, 1000, 2000)] * 3
    esdb_summary = summarize_backend("esdb", esdb)
    assert esdb_summary.saves.per_s == 500.0
    assert (esdb_summary.gets.min_per_s, esdb_summary.gets.max_per_s) == (900.0, 1500.0)
    assert esdb_summary.notifications.count == 21_000
    ratios = phase_ratios(esdb_summary, summarize_backend("postgresql", pg), 1.0)
    assert (ratios.saves.value, ratios.saves.met) == (1.0, True)
    assert (ratios.gets.value, ratios.gets.met) == (1.0, True)
    assert (ratios.notifications.value, ratios.notifications.met) == (3.5, True)
    below = phase_ratios(esdb[0], pg[0], 1.0)
    assert (below.saves.value, below.saves.met) == (0.8, False)


def _report() -> BenchReport:
    esdb, pg = _round("esdb", 400, 1500, 60_000), _round("postgresql", 500, 1000, 180_000)
    ratios = phase_ratios(esdb, pg, 1.0)
    return BenchReport(
        config=BenchConfig(
            events=1000,
            clients=8,
            durability="fsync",
            stream_length=100,
            read_page=1000,
            event_bytes=160,
            scenario="eventsourcing",
            url="nats://x",
            own_stack=True,
            nats_server_version="2.15.1",
            rounds=2,
        ),
        eventsourcing=EventsourcingReport(
            aggregates=1000,
            events_per_aggregate=4,
            warmup=8,
            gets=1000,
            threads=8,
            page=1000,
            passes=5,
            postgres_version="15.18",
            rounds=[
                EventsourcingRound(round=n, backends=[esdb, pg], ratios=ratios) for n in (1, 2)
            ],
            backends=[
                summarize_backend("esdb", [esdb] * 2),
                summarize_backend("postgresql", [pg] * 2),
            ],
            ratios=ratios,
        ),
    )


def test_report_prints_rounds_medians_and_verdicts() -> None:
    text = format_report(_report())
    assert "esdb bench eventsourcing: 1,000 aggregates x 2 rounds, 8 threads" in text
    assert "esdb / postgresql aggregates/s: 0.80x (target >= 1x: NOT met)" in text
    assert "esdb / postgresql gets/s: 1.50x (target >= 1x: met)" in text
    assert "esdb / postgresql notifications/s: 0.33x (target >= 1x: NOT met)" in text
    assert "eventsourcing, median of 2 rounds" in text
    assert "errors (failed saves or gets" in text and text.rstrip().endswith(": 0")


def test_json_report_carries_the_eventsourcing_figures() -> None:
    decoded = msgspec.json.decode(msgspec.json.encode(_report()))
    es = decoded["eventsourcing"]
    assert es["ratios"]["gets"] == {"value": 1.5, "target": 1.0, "met": True}
    assert [b["backend"] for b in es["backends"]] == ["esdb", "postgresql"]
    assert es["backends"][1]["notifications"]["per_s"] == 180_000.0
