"""The persistent scenario's pure parts: its options, and the lag verdict."""

from __future__ import annotations

import argparse

from esdb.benchmarks.cli import BenchOptions, add_bench_arguments
from esdb.benchmarks.figures import LAG_GROWTH_ALLOWANCE_S, LagSample, lag_figures


def _options(*argv: str) -> BenchOptions:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return BenchOptions.from_args(parser.parse_args(list(argv)))


def _samples(*lags: int) -> list[LagSample]:
    return [
        LagSample(at_s=n + 0.5, lag=lag, in_flight=0, checkpoint=0, undelivered=0)
        for n, lag in enumerate(lags)
    ]


def test_persistent_defaults_to_two_consumers_for_twenty_seconds() -> None:
    options = _options("--scenario", "persistent")
    assert (options.consumers, options.max_in_flight, options.duration) == (2, 100, 20.0)
    assert _options("--scenario", "live").duration == 10.0
    assert _options("--scenario", "persistent", "--duration", "3").duration == 3.0


def test_a_lag_that_saws_but_does_not_grow_is_bounded() -> None:
    figures = lag_figures(_samples(10, 900, 40, 800, 20, 950, 30, 700, 60), offered_rate=1000)
    assert figures.bounded is True
    assert (figures.max, figures.final) == (950, 60)
    assert figures.allowance == 1000 * LAG_GROWTH_ALLOWANCE_S


def test_a_lag_that_keeps_growing_is_not_bounded() -> None:
    growing = _samples(*(n * 300 for n in range(1, 10)))
    figures = lag_figures(growing, offered_rate=1000)
    assert figures.bounded is False
    assert figures.last_mean > figures.middle_mean + figures.allowance


def test_too_few_samples_give_no_verdict() -> None:
    assert lag_figures(_samples(5, 5), offered_rate=1000).bounded is None
    assert lag_figures([], offered_rate=1000).max == 0
