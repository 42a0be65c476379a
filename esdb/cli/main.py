"""`esdb` entry point: subcommands and their arguments."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from esdb.cli import (
    api_docs_command,
    backup_command,
    cluster_command,
    config_command,
    export_command,
    import_command,
    projection_commands,
    session,
    status_command,
    stream_commands,
    subscription_commands,
    tail_command,
    user_command,
)
from esdb.services.supervisor.nats_server import HOST
from esdb.services.supervisor.stack import (
    DEFAULT_CLUSTER_PORT,
    DEFAULT_UI_PORT,
    StackOptions,
    up,
)
from esdb.shared.settings import SettingsError, load_configuration


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="esdb", description="An event store over NATS.")
    commands = parser.add_subparsers(dest="command", required=True)
    up_cmd = commands.add_parser(
        "up",
        help="start the whole stack (or this host's node of a cluster) in the foreground",
        description=(
            "Every option but --nodes has an ESDB_* setting (esdb config shows them); "
            "an option given here wins. docs/cluster.md runs one node per host."
        ),
    )
    up_cmd.add_argument("--nodes", type=int, default=1, help="nodes on this machine (1, 3, 5)")
    up_cmd.add_argument("--data-dir", type=Path, default=None, help="ESDB_DATA_DIR")
    where = up_cmd.add_mutually_exclusive_group()
    where.add_argument("--nats-port", type=int, default=None, help="ESDB_NATS_PORT")
    where.add_argument("--nats-url", default=None, help="ESDB_NATS_URL: NATS you already run")
    up_cmd.add_argument(
        "--durability",
        choices=("fsync", "interval", "memory"),
        default=None,
        help="ESDB_DURABILITY",
    )
    up_cmd.add_argument("--log-level", default=None, help="ESDB_LOG_LEVEL")
    cluster = up_cmd.add_argument_group("one node per host (docs/cluster.md)")
    cluster.add_argument("--node-id", default=None, help="ESDB_NODE_ID: this node's unique id")
    cluster.add_argument("--host", default=None, help="ESDB_HOST: the address this node listens on")
    cluster.add_argument(
        "--join",
        default=None,
        metavar="ADDR[:PORT],...",
        help="ESDB_JOIN: members to route to (any one reachable is enough; a DNS name "
        "stands for all its addresses)",
    )
    cluster.add_argument(
        "--cluster-port", type=int, default=None, help="ESDB_CLUSTER_PORT: the route port"
    )
    cluster.add_argument(
        "--replicas", type=int, default=None, help="ESDB_REPLICAS (default 3 with --node-id)"
    )
    up_cmd.add_argument(
        "--auth", action="store_true", help="require credentials; per-store permissions"
    )
    up_cmd.add_argument("--tls-cert", type=Path, help="serve TLS with this certificate (PEM)")
    up_cmd.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    up_cmd.add_argument("--tls-ca", type=Path, help="the CA that signed it, for the services")
    web = up_cmd.add_argument_group("the admin web UI (docs/ui.md)")
    web.add_argument("--ui-host", default=None, help="ESDB_UI_HOST: the address it listens on")
    web.add_argument(
        "--ui-port", type=int, default=None, help="ESDB_UI_PORT (default 2113; 0: any free one)"
    )
    web.add_argument(
        "--no-ui", dest="ui", action="store_false", default=None, help="ESDB_UI=false: no UI"
    )

    common = session.connection_options()
    stream_commands.add_commands(commands, common)
    tail_command.add_command(commands, common)
    subscription_commands.add_command(commands, common)
    projection_commands.add_command(commands, common)
    status_command.add_command(commands, common)
    cluster_command.add_command(commands, common)
    config_command.add_command(commands)
    api_docs_command.add_command(commands)
    backup_command.add_commands(commands)
    export_command.add_command(commands, common)
    import_command.add_command(commands, common)
    user_command.add_command(commands)
    # The bench's options belong to esdb.benchmarks, imported only when `esdb bench` runs.
    commands.add_parser(
        "bench", add_help=False, help="measure appends and reads (esdb bench --help)"
    )
    return parser


def main(argv: list[str] | None = None) -> int | None:
    """Run one `esdb` subcommand; returns its exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        return _bench(extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "config":
        return config_command.show_config(args)
    if args.command == "api-docs":
        return api_docs_command.run(args)
    if args.command in backup_command.COMMANDS:
        return backup_command.run(args)
    if args.command == "user":
        return user_command.run(args)
    if args.command == "up":
        up(up_options(args))
        return None
    return session.run(args.run, args)


def up_options(args: argparse.Namespace) -> StackOptions:
    """What `esdb up` is asked for: each option, else its `ESDB_*` setting."""
    try:
        configuration = load_configuration()
    except SettingsError as e:
        raise SystemExit(f"esdb up: invalid configuration: {e}") from e
    settings = configuration.sources

    def given(name: str, option: Any) -> Any:
        """The option, else the setting when the environment or config file gives it."""
        if option is not None:
            return option
        return configuration.value(name) if settings[name] != "default" else None

    node_id = given("node_id", args.node_id)
    join = args.join.split(",") if args.join is not None else given("join", None)
    nats_url = args.nats_url
    if nats_url is None and args.nats_port is None and node_id is not None:
        nats_url = given("nats_url", None)
    return StackOptions(
        data_dir=given("data_dir", args.data_dir) or Path("./esdb-data"),
        durability=given("durability", args.durability) or "fsync",
        nodes=args.nodes,
        nats_port=given("nats_port", args.nats_port),
        nats_url=nats_url,
        log_level=given("log_level", args.log_level) or "INFO",
        auth=args.auth,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_ca=args.tls_ca,
        node_id=node_id,
        host=given("host", args.host) or HOST,
        join=tuple(member.strip() for member in join or () if member.strip()),
        cluster_port=given("cluster_port", args.cluster_port) or DEFAULT_CLUSTER_PORT,
        replicas=given("replicas", args.replicas),
        ui=configuration.value("ui") if args.ui is None else args.ui,
        ui_host=given("ui_host", args.ui_host) or HOST,
        ui_port=_or_default(given("ui_port", args.ui_port), DEFAULT_UI_PORT),
    )


def _or_default(value: int | None, default: int) -> int:
    """`value` unless it was not given (0 is a value: any free port)."""
    return default if value is None else value


def _bench(argv: list[str]) -> int:
    from esdb.benchmarks.cli import add_bench_arguments, run_bench

    parser = argparse.ArgumentParser(prog="esdb bench", description="Measure esdb.")
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
