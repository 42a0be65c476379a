"""`esdb status`: the cluster's nodes and health."""

from __future__ import annotations

import argparse
from typing import Any

from esdb.cli.output import json_line, table
from esdb.client import Client


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `esdb status` to the `esdb` subcommands."""
    status = commands.add_parser(
        "status",
        parents=[common],
        help="cluster nodes, their roles, applied log sequence and lag; and health",
        description="Exit status 0 when healthy, 1 otherwise.",
    )
    status.set_defaults(run=show_status)


async def show_status(client: Client, args: argparse.Namespace) -> int:
    """`esdb status`: 0 when the cluster is healthy, else 1."""
    cluster = await client.cluster_status()
    health = await client.health()
    if args.json:
        print(json_line({"cluster": cluster, "health": health}))
    else:
        rows = [
            (
                node.node_id,
                node.role,
                node.applied_sequence,
                node.log_last_sequence,
                node.lag,
                node.log_hash[:12] or "-",
                ",".join(k for k, up in node.members.items() if up) or "-",
                ",".join(node.stores),
            )
            for node in cluster.nodes
        ]
        if rows:
            header = ("NODE", "ROLE", "APPLIED", "LOG LAST", "LAG", "LOG HASH", "SEES UP", "STORES")
            print(table(header, rows))
        else:
            print("no writer node answered")
        readers = "1 reader" if health.readers == 1 else f"{health.readers} readers"
        print(f"leader: {cluster.leader or 'none'}")
        if cluster.log is not None:
            log = cluster.log
            print(
                f"log: sequences {log.first_sequence}..{log.last_sequence}, "
                f"JetStream leader {log.leader or '-'}"
            )
            for replica in log.replicas:
                state = "offline" if replica.offline else "current" if replica.current else "behind"
                print(f"  replica {replica.name}: {state}, lag {replica.lag}")
        if cluster.consistent:
            print("consistency: nodes agree on leader, membership and log hash")
        else:
            print("consistency: PROBLEMS")
            for problem in cluster.problems:
                print(f"  - {problem}")
        print(f"health: {health.status} ({readers} answering)")
    return 0 if health.status == "ok" else 1
