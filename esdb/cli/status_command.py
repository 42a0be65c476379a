"""`esdb status`: the cluster's nodes, the log's replicas, health, and (with `--data-dir`) every
process of a local stack with its readiness."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from esdb.cli.output import json_line, table
from esdb.client import Client

READY_TIMEOUT_S = 5.0


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `esdb status` to the `esdb` subcommands."""
    status = commands.add_parser(
        "status",
        parents=[common],
        help="cluster nodes, their roles, applied log sequence and lag; and health",
        description="Exit status 0 when healthy, 1 otherwise.",
    )
    status.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the --data-dir of a local `esdb up`: also list its processes and their /readyz",
    )
    status.set_defaults(run=show_status)


async def show_status(client: Client, args: argparse.Namespace) -> int:
    """`esdb status`: 0 when the cluster is healthy, else 1."""
    cluster = await client.cluster_status()
    health = await client.health()
    processes = await local_processes(args.data_dir) if args.data_dir else None
    if args.json:
        found: dict[str, Any] = {"cluster": cluster, "health": health}
        if processes is not None:
            found["processes"] = [
                {"name": n, "pid": p, "http": u, "ready": r} for n, p, u, r in processes
            ]
        print(json_line(found))
        return 0 if health.status == "ok" else 1
    rows: list[tuple[object, ...]] = [
        (
            node.node_id,
            node.host or "-",
            node.role,
            "stalled" if node.stalled else "ok",
            node.applied_sequence,
            node.log_last_sequence,
            node.lag,
            node.log_hash[:12] or "-",
            ",".join(k for k, up in node.members.items() if up) or "-",
            ",".join(node.stores),
        )
        for node in cluster.nodes
    ]
    answered = {node.node_id for node in cluster.nodes}
    rows += [
        (m.node_id, m.host, "removed" if m.state == "removed" else "down", "no answer", *"-" * 6)
        for m in cluster.members
        if m.node_id not in answered
    ]
    if rows:
        header = (
            "NODE", "HOST", "ROLE", "STATE", "APPLIED", "LOG LAST", "LAG", "LOG HASH", "SEES UP",
            "STORES",
        )  # fmt: skip
        print(table(header, rows))
    else:
        print("no writer node answered")
    for node in cluster.nodes:
        if node.stalled:
            print(f"  {node.node_id} stalled: {node.stalled}")
    if cluster.log is not None:
        log = cluster.log
        print()
        replicas: list[tuple[str, str, int]] = [(log.leader, "leader", 0)] if log.leader else []
        replicas += [
            (
                replica.name,
                "offline" if replica.offline else "current" if replica.current else "behind",
                replica.lag,
            )
            for replica in log.replicas
        ]
        if replicas:
            print(table(("LOG REPLICA", "STATE", "LAG"), replicas))
        print(f"log: sequences {log.first_sequence}..{log.last_sequence}")
    if processes is not None:
        print()
        print(table(("PROCESS", "PID", "HTTP", "READY"), processes) if processes else "no pids")
    print()
    print(f"leader: {cluster.leader or 'none'}")
    if cluster.consistent:
        print("consistency: nodes agree on leader, membership and log hash")
    else:
        print("consistency: PROBLEMS")
        for problem in cluster.problems:
            print(f"  - {problem}")
    readers = "1 reader" if health.readers == 1 else f"{health.readers} readers"
    print(f"health: {health.status} ({readers} answering)")
    return 0 if health.status == "ok" else 1


async def local_processes(data_dir: Path) -> list[tuple[str, str, str, str]]:
    """(name, pid, HTTP endpoint, readiness) of each process `esdb up --data-dir` runs, from
    its `run/` files; readiness is what `/readyz` answers ("-" without an endpoint)."""
    run = data_dir / "run"
    names = sorted(path.stem for path in run.glob("*.pid")) if run.is_dir() else []

    async def describe(name: str) -> tuple[str, str, str, str]:
        pid = _read(run / f"{name}.pid") or "-"
        url = _read(run / f"{name}.http")
        ready = await _readiness(url) if url else "-"
        return name, pid, url or "-", ready

    return list(await asyncio.gather(*(describe(name) for name in names)))


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


async def _readiness(url: str) -> str:
    parts = urlsplit(url)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port), READY_TIMEOUT_S
        )
        try:
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: esdb\r\n\r\n")
            await writer.drain()
            response = await asyncio.wait_for(reader.read(), READY_TIMEOUT_S)
        finally:
            writer.close()
    except (OSError, TimeoutError) as e:
        return f"no answer ({type(e).__name__})"
    body = response.partition(b"\r\n\r\n")[2].decode(errors="replace").strip()
    return "ready" if body == "ready" else body.removeprefix("not ready: ") or "?"
