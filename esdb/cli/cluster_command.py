"""`esdb cluster step-down | replicas N | remove NODE`: change the cluster while it serves."""

from __future__ import annotations

import argparse
from typing import Any

from esdb.cli.output import json_line
from esdb.client import Client


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `esdb cluster` and its actions to the `esdb` subcommands."""
    cluster = commands.add_parser(
        "cluster", help="hand leadership over, change replicas, remove a node (docs/cluster.md)"
    )
    actions = cluster.add_subparsers(dest="cluster_action", required=True)
    step_down = actions.add_parser(
        "step-down",
        parents=[common],
        help="the writer leader hands leadership to a caught-up follower",
    )
    step_down.set_defaults(run=_step_down)
    replicas = actions.add_parser(
        "replicas",
        parents=[common],
        help="set the replica count of the log, lease, members and images (1, 3 or 5)",
    )
    replicas.add_argument("replicas", type=int)
    replicas.set_defaults(run=_replicas)
    remove = actions.add_parser(
        "remove",
        parents=[common],
        help="take a stopped node out for good: its replicas move to the other servers",
    )
    remove.add_argument("node")
    remove.set_defaults(run=_remove)


def _show(result: object, args: argparse.Namespace, text: str) -> int:
    print(json_line(result) if args.json else text)
    return 0


async def _step_down(client: Client, args: argparse.Namespace) -> int:
    result = await client.step_down()
    now = result.leader or "not yet elected"
    return _show(result, args, f"{result.previous} stepped down; leader now {now}")


async def _replicas(client: Client, args: argparse.Namespace) -> int:
    result = await client.set_replicas(args.replicas)
    changed = ", ".join(result.streams) or "nothing to change"
    return _show(result, args, f"replicas {result.replicas}: {changed}")


async def _remove(client: Client, args: argparse.Namespace) -> int:
    result = await client.remove_node(args.node)
    moved = ", ".join(result.streams) or "no stream had a replica there"
    server = "left" if result.server_removed else "was not removed from"
    text = f"{result.node} removed; replicas moved: {moved}; its server {server} JetStream"
    return _show(result, args, text)
