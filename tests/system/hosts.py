"""A cluster across "machines" for system tests: each node is its own `esdb up --node-id
--host --join`, run inside a network namespace of its own on a private bridge
(`tests/system/netns.py`), exactly as an operator runs one node per host. Host `i` runs node
`node<i>` unless it was given another id: a host reused after its node was removed needs a
new id and a fresh data directory, as a removed id is refused for good."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.stack import Stack, spawn_stack
from tests.system.cluster import events_in
from tests.system.netns import PrivateNetwork

NATS_PORT = 4222
CLUSTER_PORT = 6222


@dataclass
class HostCluster:
    """Nodes `node<i>` on host `i` of `network` (or the ids in `node_ids`), each an
    `esdb up` of its own."""

    network: PrivateNetwork
    root: Path
    durability: str = "fsync"
    env: dict[str, str] = field(default_factory=dict)
    running: dict[int, Stack] = field(default_factory=dict)
    node_ids: dict[int, str] = field(default_factory=dict)

    def address(self, index: int) -> str:
        """Host `index`'s address on the bridge."""
        return self.network.node(index).address

    def node_id(self, index: int) -> str:
        """The id of the node host `index` runs (or last ran)."""
        return self.node_ids.get(index, f"node{index}")

    def data_dir(self, index: int) -> Path:
        """Host `index`'s `--data-dir`: one per node id, so a new id starts afresh."""
        node = self.node_id(index)
        return self.root / (f"host{index}" if node == f"node{index}" else f"host{index}-{node}")

    def url(self, *indexes: int) -> str:
        """Client URLs of the given hosts (default: every running one)."""
        chosen = indexes or tuple(sorted(self.running))
        return ",".join(f"nats://{self.address(i)}:{NATS_PORT}" for i in chosen)

    def spawn(
        self, index: int, join: tuple[int, ...], *extra: str, node_id: str | None = None
    ) -> Stack:
        """Start host `index`'s node (as `node_id` from now on, if given), routed to the hosts
        in `join`; not waiting."""
        if node_id is not None:
            self.node_ids[index] = node_id
        argv = [
            sys.executable, "-m", "esdb.cli.main", "up",
            "--node-id", self.node_id(index),
            "--host", self.address(index),
            "--join", ",".join(self.address(i) for i in join),
            "--nats-port", str(NATS_PORT),
            "--cluster-port", str(CLUSTER_PORT),
            "--data-dir", str(self.data_dir(index)),
            "--durability", self.durability,
            *extra,
        ]  # fmt: skip
        stack = spawn_stack(
            self.network.exec_argv(index, argv),
            url=self.url(index),
            data_dir=self.data_dir(index),
            env=self.env,
        )
        self.running[index] = stack
        return stack

    def start(
        self, index: int, join: tuple[int, ...], *extra: str, node_id: str | None = None
    ) -> str:
        """Start host `index`'s node and wait for its `ready` line, which it returns."""
        stack = self.spawn(index, join, *extra, node_id=node_id)
        return stack.wait_ready(self.node_id(index))

    def stop(self, index: int, timeout: float = 60.0) -> int:
        """SIGTERM host `index`'s `esdb up`, as systemd stops it; its exit code."""
        stack = self.running.pop(index)
        stack.process.send_signal(signal.SIGTERM)
        return stack.process.wait(timeout)

    def kill_host(self, index: int) -> int:
        """kill -9 every process on host `index` (nats-server included), as a power cut
        would; how many there were."""
        return self.cut_power(index)[0]

    def cut_power(self, index: int) -> tuple[int, float]:
        """`kill_host`, also saying when (`time.monotonic()`) the last process was signalled:
        listing the host's processes first takes a while on a busy machine."""
        pids = self.network.pids(index)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        stack = self.running.pop(index)
        stack.process.wait(10)
        return len(pids), killed_at

    def replica(self, index: int, store: str = "default") -> list[tuple[Any, ...]]:
        """Every event in host `index`'s LMDB, read from its files."""
        return events_in(self.data_dir(index) / self.node_id(index) / store)

    def stop_all(self) -> None:
        """Stop every node still running (SIGTERM, then the namespaces' teardown kills)."""
        for index in sorted(self.running, reverse=True):
            with contextlib.suppress(Exception):
                self.stop(index, timeout=30)
