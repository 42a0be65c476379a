"""Supervised child processes: start, restart on crash with backoff, stop gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from esdb.shared.files import write_atomically
from esdb.shared.service_runtime import EXIT_REFUSED

log = logging.getLogger("esdb.supervisor")

_MIN_BACKOFF_S = 0.2
_MAX_BACKOFF_S = 5.0
_STABLE_AFTER_S = 30.0


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the supervisor dies, even by kill -9, so no
    service outlives its stack."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One supervised process and how to start it again."""

    name: str
    argv: list[str]
    env: dict[str, str]
    pid_file: Path
    log_file: Path | None = None
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    paused: bool = False
    refused: bool = False
    """It exited with `EXIT_REFUSED`: restarting would not help, so it was not."""
    _backoff: float = field(default=_MIN_BACKOFF_S, repr=False)

    async def start(self) -> None:
        """Spawn the process and record its pid."""
        output = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env={**os.environ, **self.env},
                stdout=output,
                stderr=output,
                preexec_fn=_die_with_parent,
                # A terminal's Ctrl-C goes to the whole foreground process group; in a group
                # of its own a child hears of the stop from the supervisor only, in order
                # (gateway, then the nodes, NATS last), not all at once with NATS gone.
                process_group=0,
            )
        finally:
            if output is not None:
                output.close()
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        # Tools and tests read it at any moment: never let them see it half written.
        write_atomically(self.pid_file, str(self.process.pid))

    async def supervise(
        self, stopping: asyncio.Event, on_refused: Callable[[], None] | None = None
    ) -> None:
        """Keep the process running until `stopping` is set; a refusal (`EXIT_REFUSED`)
        ends the supervision and calls `on_refused`."""
        while not stopping.is_set():
            if self.process is None:
                await self.start()
            assert self.process is not None
            started = time.monotonic()
            code = await self.process.wait()
            if stopping.is_set():
                return
            if code == EXIT_REFUSED:
                log.error("%s refused to run (exit %s); not restarting it", self.name, code)
                self.refused = True
                if on_refused is not None:
                    on_refused()
                return
            if time.monotonic() - started > _STABLE_AFTER_S:
                self._backoff = _MIN_BACKOFF_S
            log.warning(
                "%s (pid %s) exited with code %s; restarting in %.1f s",
                self.name,
                self.process.pid,
                code,
                self._backoff,
            )
            self.process = None
            self.restarts += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._backoff)
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF_S)

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            log.warning("%s did not stop in %.0f s; killing it", self.name, grace)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
