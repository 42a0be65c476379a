"""`--scenario eventsourcing`: the same eventsourcing application on esdb
(`PERSISTENCE_MODULE=esdb.eventsourcing`) and on the library's PostgreSQL module, in
alternating rounds, each backend on a fresh store or database every round.

PostgreSQL is the bench's own (see `pg_server`); esdb is the bench's stack. Per round and
backend: untimed warm-up saves (one per thread), then the timed saves, gets and notification
reads of `es_app`, a resource sample after each (the esdb stack's processes, this process,
and PostgreSQL's processes summed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from esdb.benchmarks.es_app import (
    EVENTS_PER_AGGREGATE,
    DogSchool,
    run_gets,
    run_notifications,
    run_saves,
)
from esdb.benchmarks.figures import (
    BackendRound,
    BenchReport,
    EventsourcingReport,
    EventsourcingRound,
    phase_ratios,
    summarize_backend,
)
from esdb.benchmarks.pg_server import PgServer
from esdb.benchmarks.stack import BenchStack
from esdb.client import Client, EsdbError

ESDB_BACKEND = "esdb"
POSTGRES_BACKEND = "postgresql"
NOTIFICATION_PASSES = 10
"""Whole passes over the application sequence per notification phase: one pass of the
default size takes a fraction of a second, too short for a steady figure."""

Sample = Callable[[str, int, str], Awaitable[None]]
"""Take a resource sample after a phase: its name, its events, the backend."""


@dataclass(frozen=True)
class EventsourcingPlan:
    """What every round does on each backend."""

    run_id: str
    rounds: int
    aggregates: int
    gets: int
    threads: int
    page: int
    passes: int
    target: float

    def store(self, number: int) -> str:
        """The esdb store (and PostgreSQL database) of round `number`."""
        return f"esbench_{self.run_id}_r{number}"


async def run_eventsourcing(
    stack: BenchStack,
    plan: EventsourcingPlan,
    report: BenchReport,
    say: Callable[[str], None],
) -> None:
    """Start PostgreSQL, run `plan.rounds` rounds (esdb, then PostgreSQL), summarize into
    `report.eventsourcing`, and stop PostgreSQL."""
    say("eventsourcing: starting PostgreSQL (initdb in a temporary directory)...")
    pg = await asyncio.to_thread(PgServer.start)
    stored = 0
    try:
        rounds: list[EventsourcingRound] = []
        for number in range(1, plan.rounds + 1):
            tag = f"r{number} " if plan.rounds > 1 else ""
            prefix = f"round {number}/{plan.rounds}: " if plan.rounds > 1 else ""
            store = plan.store(number)

            async def sample(label: str, events: int, side: str, tag: str = tag) -> None:
                nonlocal stored
                if side == ESDB_BACKEND and label == "saves":
                    stored += events
                taken = await stack.sample(f"{tag}{side} {label}", events, stored)
                usage = await asyncio.to_thread(pg.usage)
                if usage is not None:
                    taken.processes.append(usage)
                report.resources.append(taken)

            esdb_env = {
                "PERSISTENCE_MODULE": "esdb.eventsourcing",
                "ESDB_URL": stack.url,
                "ESDB_STORE": store,
            }
            say(f"{prefix}eventsourcing on esdb (store {store})...")
            try:
                esdb = await _backend(ESDB_BACKEND, esdb_env, plan, sample)
            finally:
                await _remove_store(stack.url, store)
            say(f"{prefix}eventsourcing on PostgreSQL {pg.version} (database {store})...")
            await asyncio.to_thread(pg.create_database, store)
            try:
                postgres = await _backend(
                    POSTGRES_BACKEND, pg.env(store, plan.threads), plan, sample
                )
            finally:
                await asyncio.to_thread(pg.drop_database, store)
            ratios = phase_ratios(esdb, postgres, plan.target)
            say(
                f"{prefix}esdb / PostgreSQL: saves {ratios.saves.value:.2f}x, gets "
                f"{ratios.gets.value:.2f}x, notifications {ratios.notifications.value:.2f}x"
            )
            rounds.append(
                EventsourcingRound(round=number, backends=[esdb, postgres], ratios=ratios)
            )
    finally:
        await asyncio.to_thread(pg.stop)
    backends = [
        summarize_backend(name, [r.backends[i] for r in rounds])
        for i, name in enumerate((ESDB_BACKEND, POSTGRES_BACKEND))
    ]
    report.eventsourcing = EventsourcingReport(
        aggregates=plan.aggregates,
        events_per_aggregate=EVENTS_PER_AGGREGATE,
        warmup=plan.threads,
        gets=plan.gets,
        threads=plan.threads,
        page=plan.page,
        passes=plan.passes,
        postgres_version=pg.version,
        rounds=rounds,
        backends=backends,
        ratios=phase_ratios(backends[0], backends[1], plan.target),
    )


async def _backend(
    backend: str,
    env: dict[str, str],
    plan: EventsourcingPlan,
    sample: Sample,
) -> BackendRound:
    """One backend's three phases on a fresh application."""
    school = await asyncio.to_thread(DogSchool, env=env)
    try:
        warm, _ = await asyncio.to_thread(
            run_saves, school, plan.threads, plan.threads, f"{backend}-warm"
        )
        saved, saves = await asyncio.to_thread(
            run_saves, school, plan.aggregates, plan.threads, backend
        )
        await sample("saves", saves.count * EVENTS_PER_AGGREGATE, backend)
        gets = await asyncio.to_thread(run_gets, school, saved, plan.gets, plan.threads)
        await sample("gets", gets.count * EVENTS_PER_AGGREGATE, backend)
        expected = (len(warm) + len(saved)) * EVENTS_PER_AGGREGATE
        notifications = await asyncio.to_thread(
            run_notifications, school.recorder, expected, plan.page, plan.passes
        )
        await sample("notifications", notifications.count, backend)
    finally:
        await asyncio.to_thread(school.close)
    return BackendRound(backend=backend, saves=saves, gets=gets, notifications=notifications)


async def _remove_store(url: str, store: str) -> None:
    """Remove a round's store, so that a running stack is left as it was."""
    with contextlib.suppress(EsdbError):
        async with Client.connect(url) as client:
            await client.remove_store(store)
