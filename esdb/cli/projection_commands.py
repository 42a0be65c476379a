"""`esdb projections ...`: JavaScript projections for operators (list, create FILE, show,
state, result, enable, disable, reset, delete)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from esdb.cli.output import json_line, note, table
from esdb.client import Client
from esdb.contracts.projections import START_AT_END, START_AT_START, ProjectionInfo

_HEADERS = ["NAME", "STATUS", "POSITION", "LAG", "PROCESSED", "EMITTED", "PARTITIONS", "REASON"]


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `esdb projections` and its actions."""
    projections = commands.add_parser("projections", help="manage JavaScript projections")
    actions = projections.add_subparsers(dest="projection_action", required=True)
    listing = actions.add_parser("list", parents=[common], help="every projection of the store")
    listing.set_defaults(run=list_projections)
    create = actions.add_parser(
        "create", parents=[common], help="create a projection from a JavaScript file"
    )
    create.add_argument("file", help="the query's file (- reads standard input)")
    create.add_argument("--name", help="its name (default: the file's name without .js)")
    create.add_argument("--start", choices=(START_AT_START, START_AT_END), default=START_AT_START)
    create.add_argument("--emit", action="store_true", help="allow emit and linkTo")
    create.add_argument("--disabled", action="store_true", help="create it stopped")
    create.set_defaults(run=create_projection)
    for action, what, run in (
        ("show", "one projection: status, progress and query", show_projection),
        ("enable", "run it (again)", enable_projection),
        ("disable", "stop it where it is", disable_projection),
        ("reset", "clear its states and start again (emitted events stay)", reset_projection),
        ("delete", "remove it and its states (emitted events stay)", delete_projection),
    ):
        parser = actions.add_parser(action, parents=[common], help=what)
        parser.add_argument("name")
        parser.set_defaults(run=run)
    for action, what, run in (
        ("state", "its state (JSON)", projection_state),
        ("result", "its result: the state through transformBy/filterBy", projection_result),
    ):
        parser = actions.add_parser(action, parents=[common], help=what)
        parser.add_argument("name")
        parser.add_argument("--partition", help="a partition (default: the shared state)")
        parser.set_defaults(run=run)


def _row(info: ProjectionInfo) -> list[object]:
    return [
        info.name,
        info.status,
        info.position,
        info.lag,
        info.events_processed,
        info.events_emitted,
        info.partitions,
        info.reason if not info.reason else f"{info.reason} (at {info.fault_position})",
    ]


def _print(info: ProjectionInfo, args: argparse.Namespace) -> None:
    print(json_line(info) if args.json else table(_HEADERS, [_row(info)]))


async def list_projections(client: Client, args: argparse.Namespace) -> int:
    """Print every projection of the store."""
    found = await client.list_projections()
    if args.json:
        for info in found:
            print(json_line(info))
    elif found:
        print(table(_HEADERS, [_row(info) for info in found]))
    else:
        note(f"no projections in store {client.store!r}")
    return 0


async def create_projection(client: Client, args: argparse.Namespace) -> int:
    """Create a projection from a file and print it."""
    if args.file == "-":
        query, name = sys.stdin.read(), args.name
    else:
        path = Path(args.file)
        query, name = path.read_text(), args.name or path.stem
    if not name:
        note("give --name when the query comes from standard input")
        return 2
    info = await client.create_projection(
        name,
        query,
        start=args.start,
        enabled=not args.disabled,
        emit_enabled=args.emit,
    )
    _print(info, args)
    return 0


async def show_projection(client: Client, args: argparse.Namespace) -> int:
    """Print one projection and its query."""
    info = await client.projection_info(args.name)
    _print(info, args)
    if not args.json:
        print()
        print(info.query)
    return 0


async def enable_projection(client: Client, args: argparse.Namespace) -> int:
    """Run a projection."""
    _print(await client.enable_projection(args.name), args)
    return 0


async def disable_projection(client: Client, args: argparse.Namespace) -> int:
    """Stop a projection."""
    _print(await client.disable_projection(args.name), args)
    return 0


async def reset_projection(client: Client, args: argparse.Namespace) -> int:
    """Reset a projection."""
    _print(await client.reset_projection(args.name), args)
    return 0


async def delete_projection(client: Client, args: argparse.Namespace) -> int:
    """Delete a projection."""
    await client.delete_projection(args.name)
    note(f"deleted projection {args.name!r}")
    return 0


async def projection_state(client: Client, args: argparse.Namespace) -> int:
    """Print a partition's state as JSON."""
    print(json.dumps(await client.projection_state(args.name, args.partition)))
    return 0


async def projection_result(client: Client, args: argparse.Namespace) -> int:
    """Print a partition's result as JSON."""
    print(json.dumps(await client.projection_result(args.name, args.partition)))
    return 0
