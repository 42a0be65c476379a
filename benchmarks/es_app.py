"""The eventsourcing scenario's application (a dog school, as in docs/eventsourcing.md) and
its three timed phases, run the same way whatever the persistence module.

- *saves*: each aggregate is a `Dog` registered and taught `TRICKS` tricks, then saved: one
  insert of 1 + `TRICKS` events, one transaction (PostgreSQL) or one append (esdb).
- *gets*: `repository.get` of saved aggregates in a random order, each compared with the
  aggregate that was saved.
- *notifications*: whole passes over the application sequence with the recorder's
  `select_notifications`, a page at a time, each pass checked against the events saved.

Saves and gets run on `threads` threads, each taking its share of the work in turn.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import ApplicationRecorder

from esdb.benchmarks.figures import PhaseFigures, phase_figures

T = TypeVar("T")

TRICKS = ("roll over", "play dead", "fetch")
"""Taught to every dog before its save: each aggregate is 1 + len(TRICKS) events."""
EVENTS_PER_AGGREGATE = 1 + len(TRICKS)
MISMATCH = "mismatch"


class Dog(Aggregate):
    """A dog of the school: a name and the tricks it learnt."""

    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        """Teach the dog a trick."""
        self.tricks.append(trick)


class DogSchool(Application[UUID]):
    """The application the scenario runs on each backend."""

    def register_dog(self, name: str) -> Dog:
        """Register a dog, teach it `TRICKS`, save it all at once; the saved aggregate."""
        dog = Dog(name)
        for trick in TRICKS:
            dog.add_trick(trick)
        self.save(dog)
        return dog


def run_saves(
    school: DogSchool, count: int, threads: int, tag: str
) -> tuple[list[Dog], PhaseFigures]:
    """Save `count` dogs from `threads` threads; the dogs saved and the phase's figures."""
    errors: Counter[str] = Counter()
    saved: list[Dog] = []

    def save(n: int) -> None:
        saved.append(school.register_dog(f"{tag}-{n}"))

    _, seconds = _on_threads(save, list(range(count)), threads, errors)
    return saved, phase_figures(len(saved), seconds, errors)


def run_gets(school: DogSchool, saved: Sequence[Dog], count: int, threads: int) -> PhaseFigures:
    """`count` gets of the saved dogs in a random order (each at least once when `count` is at
    least as many), each compared with the dog as saved."""
    order: list[Dog] = []
    while len(order) < count and saved:
        order += random.sample(list(saved), len(saved))
    order = order[:count]
    errors: Counter[str] = Counter()

    def get(dog: Dog) -> None:
        if school.repository.get(dog.id) != dog:
            raise _Mismatch

    done, seconds = _on_threads(get, order, threads, errors)
    return phase_figures(done, seconds, errors)


def run_notifications(
    recorder: ApplicationRecorder, expected: int, page: int, passes: int
) -> PhaseFigures:
    """`passes` reads of the whole application sequence in pages of `page`, one thread; a
    pass that does not read exactly `expected` notifications in id order is an error."""
    errors: Counter[str] = Counter()
    read = 0
    started = time.perf_counter()
    for _ in range(passes):
        try:
            seen, last = 0, 0
            start = 1
            while True:
                notifications = recorder.select_notifications(start, page)
                for notification in notifications:
                    if notification.id <= last:
                        raise _Mismatch
                    last = notification.id
                seen += len(notifications)
                if len(notifications) < page:
                    break
                start = last + 1
            read += seen
            if seen != expected:
                errors[MISMATCH] += 1
        except _Mismatch:
            errors[MISMATCH] += 1
        except Exception as e:
            errors[type(e).__name__] += 1
    return phase_figures(read, time.perf_counter() - started, errors)


class _Mismatch(Exception):
    """What was read back is not what was saved."""


def _on_threads(
    work: Callable[[T], None], items: list[T], threads: int, errors: Counter[str]
) -> tuple[int, float]:
    """Run `work` on every item from `threads` threads (item i on thread i mod threads);
    exceptions are counted by class in `errors`. How many succeeded, and the wall time from
    the first item to the last."""
    lock = threading.Lock()
    done = [0]

    def share(mine: list[T]) -> None:
        for item in mine:
            try:
                work(item)
                with lock:
                    done[0] += 1
            except _Mismatch:
                with lock:
                    errors[MISMATCH] += 1
            except Exception as e:
                with lock:
                    errors[type(e).__name__] += 1

    shares = [items[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="es-bench") as pool:
        started = time.perf_counter()
        list(pool.map(share, shares))
        return done[0], time.perf_counter() - started
