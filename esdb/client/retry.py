"""Retries of requests that failed for a passing reason (`unavailable`, `timeout`).

A request is only sent again when doing so cannot change what it does: it never reached a
gateway (no responders), or it is idempotent. Reads are; appends are once every event carries
an id, which is why the client stamps a fresh UUID on every event that has none before the first
try: a retried append whose events are already stored returns the original result.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from esdb.contracts.errors import EsdbError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the client retries a request that failed with `Unavailable` or `Timeout`: up to
    `max_retries` more tries, none started later than `deadline` seconds after the first,
    waiting `initial_backoff` seconds before the first retry and `multiplier` times longer
    before each next one (at most `max_backoff`). Each wait is shortened by a random fraction
    of up to `jitter`, so clients that failed together do not all come back together.
    `max_retries=0` turns retries off."""

    # Ten backoffs span 3-6.5 s: a stopping nats-server answers `no responders` for about a
    # second before it drops its clients, and a leader failover takes 1-7 s.
    max_retries: int = 10
    deadline: float = 10.0
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, not {self.max_retries}")
        for name in ("deadline", "initial_backoff", "max_backoff"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 seconds, not {getattr(self, name)}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, not {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, not {self.jitter}")

    @classmethod
    def never(cls) -> RetryPolicy:
        """No retries: every failure is raised at once."""
        return cls(max_retries=0)

    @property
    def enabled(self) -> bool:
        """Whether any request is ever sent twice."""
        return self.max_retries > 0

    def backoff(self, retry: int, fraction: float) -> float:
        """Seconds to wait before retry number `retry` (0 for the first), given a random
        `fraction` in [0, 1)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier**retry)
        return base * (1 - self.jitter * fraction)


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    may_retry: Callable[[EsdbError], bool],
    what: str = "request",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    fraction: Callable[[], float] = random.random,
) -> T:
    """`await attempt()`, again after a backoff while it raises a retryable `EsdbError` that
    `may_retry` accepts and `policy` allows another try; the last error is raised, its
    message saying how many tries were made."""
    started = clock()
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt()
        except EsdbError as error:
            retries = tries - 1
            wait = policy.backoff(retries, fraction())
            again = (
                error.retryable
                and retries < policy.max_retries
                and clock() + wait - started <= policy.deadline
                and may_retry(error)
            )
            if not again:
                if tries == 1:
                    raise
                raise _with_tries(error, tries, clock() - started) from error
            log.info("%s failed (%s: %s); retrying in %.3f s", what, error.code, error, wait)
            await sleep(wait)


def _with_tries(error: EsdbError, tries: int, elapsed: float) -> EsdbError:
    """The same error, saying how often it was tried."""
    message = f"{error.message} ({tries} tries in {elapsed:.1f} s)"
    return type(error)(message, **{**error.details, "tries": tries})
