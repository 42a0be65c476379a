"""Which stack and store a command talks to, and running it with errors as exit codes."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

from esdb.client import DEFAULT_URL, Client, EsdbError, Unavailable

Command = Callable[[Client, argparse.Namespace], Awaitable[int]]
"""A subcommand: runs against a connected client and returns the exit code."""


def connection_options() -> argparse.ArgumentParser:
    """The options every client command shares (a parent parser)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--url",
        default=os.environ.get("ESDB_URL", DEFAULT_URL),
        help="NATS URL of the stack (env ESDB_URL, default %(default)s)",
    )
    options.add_argument(
        "--store",
        default=os.environ.get("ESDB_STORE"),
        help="store to use (env ESDB_STORE; else the URL's ?store=, else `default`)",
    )
    options.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for each reply (5)"
    )
    options.add_argument("--json", action="store_true", help="print JSON (one object a line)")
    return options


def run(command: Command, args: argparse.Namespace) -> int:
    """Connect, run `command`, close; an esdb error prints `error: <code>: <message>` (and the
    request field it names, if any), exit 1."""
    try:
        return asyncio.run(_connected(command, args))
    except EsdbError as e:
        field = e.details.get("field")
        named = f" (field {field})" if field and str(field) not in e.message else ""
        print(f"error: {e.code.value}: {e.message}{named}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`esdb read ... | head`); that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


async def _connected(command: Command, args: argparse.Namespace) -> int:
    try:
        client = await Client.connect(args.url, store=args.store, timeout=args.timeout)
    except Unavailable as e:
        raise Unavailable(
            f"{e.message} (is the stack running? see `esdb up`, --url or ESDB_URL)", **e.details
        ) from e
    async with client:
        return await command(client, args)
