"""`python -m tests.system.netns_stack --options JSON`: the `esdb up` stack with per-node
listen addresses and network namespaces (supervisor options the CLI does not expose), run in
the foreground until SIGINT/SIGTERM; prints the same `ready` line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from esdb.services.supervisor.nats_server import free_port
from esdb.services.supervisor.stack import StackOptions, up
from tests.stack import Stack, launch_stack

# `python -m tests.system...` needs the repository on the path, wherever pytest was started.
REPO_ROOT = Path(__file__).resolve().parents[2]


def repo_pythonpath() -> str:
    """PYTHONPATH with the repository first."""
    return os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))


def options_json(options: StackOptions) -> str:
    """`options` as the JSON this module reads."""
    return json.dumps(
        {
            "data_dir": str(options.data_dir),
            "durability": options.durability,
            "nodes": options.nodes,
            "nats_port": options.nats_port,
            "log_level": options.log_level,
            "node_hosts": list(options.node_hosts),
            "node_netns": list(options.node_netns),
        }
    )


def options_from_json(text: str) -> StackOptions:
    """The `StackOptions` written by `options_json`."""
    raw = json.loads(text)
    return StackOptions(
        data_dir=Path(raw["data_dir"]),
        durability=raw["durability"],
        nodes=raw["nodes"],
        nats_port=raw["nats_port"],
        log_level=raw["log_level"],
        node_hosts=tuple(raw["node_hosts"]),
        node_netns=tuple(raw["node_netns"]),
    )


def start_netns_stack(
    data_dir: Path,
    hosts: tuple[str, ...],
    netns: tuple[str, ...],
    *,
    durability: str = "fsync",
    env: dict[str, str] | None = None,
) -> Stack:
    """Run a stack whose node i listens on `hosts[i]` inside `netns[i]` (with extra `ESDB_*`
    settings in `env`); wait until ready."""
    port = free_port()
    options = StackOptions(
        data_dir=data_dir,
        durability=durability,
        nodes=len(hosts),
        nats_port=port,
        node_hosts=hosts,
        node_netns=netns,
    )
    args = [sys.executable, "-m", "tests.system.netns_stack", "--options", options_json(options)]
    url = ",".join(f"nats://{host}:{port + i}" for i, host in enumerate(hosts))
    env = {**(env or {}), "PYTHONPATH": repo_pythonpath()}
    return launch_stack(args, url=url, data_dir=data_dir, what="the netns stack", env=env)


def main() -> None:
    """Parse `--options` and run the stack until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.system.netns_stack")
    parser.add_argument("--options", required=True, help="StackOptions as JSON")
    up(options_from_json(parser.parse_args().options))


if __name__ == "__main__":
    main()
