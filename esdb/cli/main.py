"""`esdb` entry point: subcommands and their arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

from esdb.cli import (
    api_docs_command,
    backup_command,
    config_command,
    export_command,
    import_command,
    session,
    status_command,
    stream_commands,
    subscription_commands,
    tail_command,
    user_command,
)
from esdb.services.supervisor.stack import StackOptions, up


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="esdb", description="An event store over NATS.")
    commands = parser.add_subparsers(dest="command", required=True)
    up_cmd = commands.add_parser("up", help="start the whole stack in the foreground")
    up_cmd.add_argument("--nodes", type=int, default=1)
    up_cmd.add_argument("--data-dir", type=Path, default=Path("./esdb-data"))
    where = up_cmd.add_mutually_exclusive_group()
    where.add_argument("--nats-port", type=int, default=None)
    where.add_argument("--nats-url", default=None)
    up_cmd.add_argument("--durability", choices=("fsync", "interval", "memory"), default="fsync")
    up_cmd.add_argument("--log-level", default="INFO")
    up_cmd.add_argument(
        "--auth", action="store_true", help="require credentials; per-store permissions"
    )
    up_cmd.add_argument("--tls-cert", type=Path, help="serve TLS with this certificate (PEM)")
    up_cmd.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    up_cmd.add_argument("--tls-ca", type=Path, help="the CA that signed it, for the services")

    common = session.connection_options()
    stream_commands.add_commands(commands, common)
    tail_command.add_command(commands, common)
    subscription_commands.add_command(commands, common)
    status_command.add_command(commands, common)
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
        up(
            StackOptions(
                data_dir=args.data_dir,
                durability=args.durability,
                nodes=args.nodes,
                nats_port=args.nats_port,
                nats_url=args.nats_url,
                log_level=args.log_level,
                auth=args.auth,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                tls_ca=args.tls_ca,
            )
        )
        return None
    return session.run(args.run, args)


def _bench(argv: list[str]) -> int:
    from esdb.benchmarks.cli import add_bench_arguments, run_bench

    parser = argparse.ArgumentParser(prog="esdb bench", description="Measure esdb.")
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
