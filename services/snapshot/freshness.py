"""Read-your-writes on any node: before answering, wait until this node has applied the log as
it stood when the request arrived (its last sequence, asked of JetStream)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from esdb.contracts.errors import Timeout, Unavailable
from esdb.contracts.subjects import LOG_STREAM
from esdb.shared.storage.catalog import SYSTEM_STORE_DIR
from esdb.shared.storage.lmdb_store import LmdbStore
from esdb.shared.wakeup import Wakeup

# A missed applied notice (the writer restarted between apply and publish) costs at most this.
POLL_S = 0.05

LogEnd = Callable[[], Awaitable[int]]
"""The sequence of the last committed log entry."""


def jetstream_log_end(js: JetStreamContext) -> LogEnd:
    """The log's last sequence as the log stream's JetStream leader reports it: every entry a
    writer acknowledged is at or below it."""

    async def log_end() -> int:
        try:
            info = await js.stream_info(LOG_STREAM)
        except nats.js.errors.NotFoundError as e:
            raise Unavailable("the replicated log does not exist yet; retry") from e
        except (nats.errors.Error, TimeoutError) as e:
            raise Unavailable(f"cannot read the replicated log's state ({e!r}); retry") from e
        return int(info.state.last_seq)

    return log_end


async def wait_applied(
    applied: Callable[[], int], wakeup: Wakeup, sequence: int, timeout_s: float
) -> None:
    """Return once `applied()` reaches `sequence`; `Timeout` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        ticket = wakeup.ticket()  # before looking, so a notice in between is not lost
        current = applied()
        if current >= sequence:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout(
                f"this node has applied the log to {current}, not yet to {sequence}",
                sequence=sequence,
                applied_sequence=current,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ticket.wait(), min(left, POLL_S))


class NodeProgress:
    """The log sequence this node has applied, read from its system store (kept open, and
    reopened when a restored image replaced its files), woken by the writer's notices."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / SYSTEM_STORE_DIR
        self._opened: tuple[int, LmdbStore] | None = None
        self._wakeup = Wakeup()

    def applied(self) -> int:
        """The applied sequence (0 before the writer created the system store)."""
        try:
            inode = (self._path / "data.mdb").stat().st_ino
        except FileNotFoundError:
            return 0
        if self._opened is None or self._opened[0] != inode:
            self.close()
            self._opened = (inode, LmdbStore(self._path, readonly=True))
        return self._opened[1].applied_sequence()

    def notify(self) -> None:
        """The writer applied more of the log."""
        self._wakeup.notify()

    async def wait_applied(self, sequence: int, timeout_s: float) -> None:
        """Return once this node has applied `sequence`; `Timeout` after `timeout_s`."""
        await wait_applied(self.applied, self._wakeup, sequence, timeout_s)

    def close(self) -> None:
        """Close the system store."""
        if self._opened is not None:
            self._opened[1].close()
            self._opened = None


class CatchUp:
    """Waits until this node has applied every entry committed before the call began."""

    def __init__(self, log_end: LogEnd, wait: Callable[[int, float], Awaitable[None]]) -> None:
        self._log_end = log_end
        self._wait = wait

    async def __call__(self, timeout_s: float) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                target = await self._log_end()
        except TimeoutError as e:
            raise Timeout("the replicated log's state did not come in time") from e
        await self._wait(target, max(0.0, timeout_s - (time.monotonic() - started)))
