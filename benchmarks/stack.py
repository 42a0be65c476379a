"""The stack a benchmark talks to: its own `esdb up` in a temporary directory, or a running one."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from esdb.benchmarks.figures import MemorySample, ProcessMemory
from esdb.services.supervisor.nats_server import free_port

SERVICES = ("gateway", "writer", "reader")
"""Services whose pid files `esdb up` writes under `<data_dir>/run/`."""

_READY_TIMEOUT_S = 120.0
_STOP_GRACE_S = 30.0


class StackError(RuntimeError):
    """The benchmark's own stack did not start."""


@dataclass
class BenchStack:
    """Where the stack is, and (when the benchmark started it) how to stop it."""

    url: str
    data_dir: Path | None
    process: asyncio.subprocess.Process | None = None
    remove_data: bool = False
    log_file: Path | None = None
    _log_handle: IO[bytes] | None = field(default=None, repr=False)

    @property
    def own(self) -> bool:
        """True when this benchmark started the stack (and will stop it)."""
        return self.process is not None

    @classmethod
    async def start(
        cls, durability: str, data_dir: Path | None, *, keep_data: bool = False
    ) -> BenchStack:
        """Run `esdb up` on a free port and wait for its `ready` line."""
        remove = data_dir is None and not keep_data
        root = Path(tempfile.mkdtemp(prefix="esdb-bench-")) if data_dir is None else data_dir
        root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log_file = root / "stack.log"
        log_handle = open(log_file, "ab")  # noqa: SIM115 - closed in stop()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "esdb.cli.main",
            "up",
            "--data-dir",
            str(root),
            "--nats-port",
            str(port),
            "--durability",
            durability,
            "--log-level",
            "WARNING",
            stdout=asyncio.subprocess.PIPE,
            stderr=log_handle,
        )
        stack = cls(
            url=f"nats://127.0.0.1:{port}",
            data_dir=root,
            process=process,
            remove_data=remove,
            log_file=log_file,
            _log_handle=log_handle,
        )
        try:
            await asyncio.wait_for(stack._wait_ready(), _READY_TIMEOUT_S)
        except BaseException as e:
            await stack.stop()
            if isinstance(e, TimeoutError):
                raise StackError(
                    f"esdb up did not print `ready` within {_READY_TIMEOUT_S:.0f} s; "
                    f"see {log_file}"
                ) from e
            raise
        return stack

    async def _wait_ready(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                code = await self.process.wait()
                raise StackError(f"esdb up exited with code {code}; see {self.log_file}")
            if b"ready" in line:
                return

    async def stop(self) -> None:
        """Stop the stack this benchmark started (SIGTERM, then SIGKILL) and clean up."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), _STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._log_handle is not None:
            self._log_handle.close()
        if self.remove_data and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def memory(self, label: str, events_stored: int) -> MemorySample:
        """RSS of the services (from their pid files) and of the stack's own nats-server."""
        pids: list[tuple[str, int]] = []
        if self.data_dir is not None:
            for name in SERVICES:
                pid = _read_pid(self.data_dir / "run" / f"{name}.pid")
                if pid is not None:
                    pids.append((name, pid))
        if self.process is not None:
            pids.extend(("nats-server", pid) for pid in _children(self.process.pid, "nats-server"))
        processes = [m for name, pid in pids if (m := process_memory(name, pid)) is not None]
        return MemorySample(label=label, events_stored=events_stored, processes=processes)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _children(parent: int, command: str) -> list[int]:
    """Pids of `parent`'s children whose command name is `command` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its last ')'.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == parent and comm == command:
            found.append(int(entry.name))
    return found


def process_memory(name: str, pid: int) -> ProcessMemory | None:
    """VmRSS and RssAnon of `pid` from /proc/<pid>/status; None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields: dict[str, int] = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            fields[key] = int(value.split()[0])
    return ProcessMemory(
        process=name, pid=pid, rss_kib=fields.get("VmRSS", 0), anon_kib=fields.get("RssAnon", 0)
    )
