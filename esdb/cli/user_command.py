"""`esdb user add`: issue a NATS credential for a stack started with `esdb up --auth`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from esdb.services.supervisor.auth import AuthError, AuthRegistry, reload_servers, with_credentials


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `esdb user add`."""
    user = commands.add_parser("user", help="manage the users of an `esdb up --auth` stack")
    actions = user.add_subparsers(dest="user_action", required=True)
    add = actions.add_parser("add", help="add a user and print its credential (shown once)")
    add.add_argument("name")
    add.add_argument(
        "--store",
        action="append",
        default=[],
        help="a store the user may use (repeat for several)",
    )
    add.add_argument(
        "--admin", action="store_true", help="every store and _sys management (no --store)"
    )
    add.add_argument("--data-dir", type=Path, default=Path("./esdb-data"))
    add.add_argument(
        "--url", default="nats://127.0.0.1:4222", help="the stack's URL, to print a connection URL"
    )


def run(args: argparse.Namespace) -> int:
    """Add the user, reload the running servers, print the credential."""
    registry = AuthRegistry(args.data_dir.resolve())
    if not registry.config_path.exists():
        print(
            f"esdb user: {args.data_dir} has no users; start it once with `esdb up --auth`",
            file=sys.stderr,
        )
        return 2
    if args.admin and args.store:
        print("esdb user: --admin already grants every store", file=sys.stderr)
        return 2
    try:
        password = registry.add(args.name, "admin" if args.admin else "tenant", args.store)
    except AuthError as e:
        print(f"esdb user: {e}", file=sys.stderr)
        return 2
    reloaded = reload_servers(args.data_dir.resolve() / "run")
    print(with_credentials(args.url, f"{args.name}:{password}"))
    print(
        f"# {args.name} may use: {'every store' if args.admin else ', '.join(args.store)}; "
        f"{reloaded} running server(s) reloaded. Keep this URL secret: it is shown once.",
        file=sys.stderr,
    )
    return 0
