"""`esdb tail`: print events as they are committed, after catching up from where asked."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import stat
import sys
from typing import Any

from esdb.cli.output import event_json, event_line, note
from esdb.cli.stream_commands import non_negative
from esdb.client import CaughtUp, Client, InvalidRequest
from esdb.client.subscription import StartPosition


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `esdb tail` to the `esdb` subcommands."""
    tail = commands.add_parser(
        "tail",
        parents=[common],
        help="print events live as they are committed",
        description=(
            "Print the events of a stream, a category, an event type or the whole store as "
            "they are committed (same lines as `esdb read`). With --from-position or "
            "--from-start, history is printed first. '-- caught up at position N --' goes to "
            "stderr once history is done; Ctrl-C stops."
        ),
    )
    tail.add_argument("stream", metavar="STREAM", nargs="?", default=None)
    which = tail.add_mutually_exclusive_group()
    which.add_argument("--category", metavar="CATEGORY", help="a stream category")
    which.add_argument("--type", dest="event_type", metavar="TYPE", help="an event type")
    which.add_argument(
        "--pattern",
        metavar="PATTERN",
        help="a NATS wildcard pattern over <category>.<stream>.<type> (escaped tokens)",
    )
    which.add_argument("--all", action="store_true", help="every event of the store")
    start = tail.add_mutually_exclusive_group()
    start.add_argument(
        "--from-position",
        metavar="N",
        type=non_negative,
        default=None,
        help="print history from position N first",
    )
    start.add_argument(
        "--from-start", action="store_true", help="print all history first (position 1)"
    )
    start.add_argument(
        "--from-version",
        metavar="V",
        type=non_negative,
        default=None,
        help="print STREAM's history from version V first",
    )
    tail.set_defaults(run=tail_events)


async def tail_events(client: Client, args: argparse.Namespace) -> int:
    """`esdb tail`: runs until SIGINT or SIGTERM, then exits 0."""
    selectors = [
        args.stream is not None,
        args.category is not None,
        args.event_type is not None,
        args.pattern is not None,
        args.all,
    ]
    if sum(selectors) != 1:
        raise InvalidRequest(
            "give one of STREAM, --category, --type, --pattern or --all", field="selector"
        )
    from_position: StartPosition = "end"
    if args.from_start:
        from_position = "start"
    elif args.from_position is not None:
        from_position = max(1, args.from_position)
    subscribing = client.subscribe(
        stream=args.stream,
        category=args.category,
        event_type=args.event_type,
        pattern=args.pattern,
        all=args.all,
        from_position=None if args.from_version is not None else from_position,
        from_version=args.from_version,
    )
    async with subscribing as subscription:
        loop = asyncio.get_running_loop()
        closing: list[asyncio.Task[None]] = []

        def stop() -> None:
            if not closing:
                closing.append(loop.create_task(subscription.close()))

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        # `esdb tail | head -1`: stop when the reader of our pipe goes away, not at the next
        # event (epoll reports the error on the pipe's write end as readiness).
        out = _pipe_fileno()
        if out is not None:
            loop.add_reader(out, stop)
        try:
            async for item in subscription:
                if isinstance(item, CaughtUp):
                    note(f"-- caught up at position {item.position} --")
                else:
                    print(event_json(item) if args.json else event_line(item), flush=True)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            if out is not None:
                loop.remove_reader(out)
            for task in closing:
                await task
    return 0


def _pipe_fileno() -> int | None:
    """stdout's file descriptor when it is a pipe."""
    try:
        fileno = sys.stdout.fileno()
        return fileno if stat.S_ISFIFO(os.fstat(fileno).st_mode) else None
    except (OSError, ValueError):
        return None
