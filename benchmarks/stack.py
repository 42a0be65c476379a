"""The stack a benchmark talks to: its own `esdb up` in a temporary directory, or a running one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import msgspec
import nats

from esdb.benchmarks.figures import CLIENT_ROW, ProcessUsage, ResourceSample
from esdb.contracts.subjects import server_name
from esdb.services.supervisor.nats_server import free_port_block, system_user_file

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_ORDER = (
    "gateway",
    "writer",
    "reader",
    "emitter",
    "snapshot",
    "subscription",
    "leader",
    "nats-server",
)

_READY_TIMEOUT_S = 120.0
_VARZ_WAIT_S = 1.0
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

    @property
    def urls(self) -> list[str]:
        """Every server URL of the stack (`url` is them comma-separated)."""
        return self.url.split(",")

    @classmethod
    async def start(
        cls, durability: str, data_dir: Path | None, *, nodes: int = 1, keep_data: bool = False
    ) -> BenchStack:
        """Run `esdb up --nodes N` on free ports and wait for its `ready` line; the servers'
        client ports are consecutive from the first."""
        remove = data_dir is None and not keep_data
        root = Path(tempfile.mkdtemp(prefix="esdb-bench-")) if data_dir is None else data_dir
        root.mkdir(parents=True, exist_ok=True)
        port = free_port_block(nodes)
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
            "--nodes",
            str(nodes),
            "--log-level",
            "WARNING",
            # The bench measures the data path; the web UI has a bench of its own (ui_bench).
            "--no-ui",
            stdout=asyncio.subprocess.PIPE,
            stderr=log_handle,
        )
        stack = cls(
            url=",".join(f"nats://127.0.0.1:{port + i}" for i in range(nodes)),
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
                    f"esdb up did not print `ready` within {_READY_TIMEOUT_S:.0f} s; see {log_file}"
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
                # "esdb ready on URL[,URL...] (data in DIR)": the URLs the stack really uses.
                words = line.decode(errors="replace").split()
                if "on" in words and words.index("on") + 1 < len(words):
                    self.url = words[words.index("on") + 1]
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

    def pid(self, name: str) -> int | None:
        """The pid in `<data_dir>/run/<name>.pid` (e.g. `writer-node2`), if there is one."""
        if self.data_dir is None:
            return None
        return _read_pid(self.data_dir / "run" / f"{name}.pid")

    async def sample(self, label: str, phase_events: int, events_stored: int) -> ResourceSample:
        """Memory and CPU time of this benchmark process and of every process with a pid file
        under `<data_dir>/run/` (the services and, when `esdb up` runs it, nats-server), and
        each nats-server's message count."""
        processes: list[ProcessUsage] = []
        own = process_usage(CLIENT_ROW, os.getpid())
        if own is not None:
            processes.append(own)
        if self.data_dir is not None:
            messages = await self._server_messages()
            for pid_file in sorted((self.data_dir / "run").glob("*.pid"), key=_process_order):
                pid = _read_pid(pid_file)
                found = None if pid is None else process_usage(pid_file.stem, pid)
                if found is not None:
                    found.messages = messages.get(pid_file.stem)
                    processes.append(found)
        return ResourceSample(
            label=label, phase_events=phase_events, events_stored=events_stored, processes=processes
        )

    async def _server_messages(self) -> dict[str, int]:
        """Messages in plus out of each of the stack's nats-servers, by process name, asked of
        every server at once as the system account; empty without its user file."""
        assert self.data_dir is not None
        try:
            user, _, password = system_user_file(self.data_dir).read_text().strip().partition(":")
        except OSError:
            return {}
        names = {
            server_name(pid.stem.removeprefix("nats-server-")): pid.stem
            for pid in (self.data_dir / "run").glob("nats-server-*.pid")
        }
        counts: dict[str, int] = {}
        try:
            nc = await nats.connect(
                servers=self.urls, user=user, password=password, allow_reconnect=False
            )
        except Exception:
            return {}
        try:
            replies = await nc.subscribe(nc.new_inbox())
            await nc.publish("$SYS.REQ.SERVER.PING.VARZ", b"", reply=replies.subject)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_VARZ_WAIT_S):
                    while len(counts) < len(names):
                        varz = msgspec.json.decode((await replies.next_msg(_VARZ_WAIT_S)).data)
                        name = names.get(varz["server"]["name"])
                        if name is not None:
                            counts[name] = varz["data"]["in_msgs"] + varz["data"]["out_msgs"]
        finally:
            await nc.close()
        return counts


def _process_order(pid_file: Path) -> tuple[int, str]:
    """Services in request order (gateway, writer, reader, others), then nats-server."""
    name = pid_file.stem
    rank = next((i for i, p in enumerate(_ORDER) if name.startswith(p)), len(_ORDER))
    return rank, name


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def process_usage(name: str, pid: int) -> ProcessUsage | None:
    """VmRSS and RssAnon from /proc/<pid>/status, CPU time from /proc/<pid>/stat; None if the
    process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    memory: dict[str, int] = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            memory[key] = int(value.split()[0])
    # The fields after "(comm)" start at field 3 (state); utime and stime are fields 14 and 15.
    after_comm = stat[stat.rindex(")") + 2 :].split()
    ticks = int(after_comm[11]) + int(after_comm[12])
    return ProcessUsage(
        process=name,
        pid=pid,
        rss_kib=memory.get("VmRSS", 0),
        anon_kib=memory.get("RssAnon", 0),
        cpu_s=round(ticks / _CLOCK_TICKS, 3),
    )
