"""`esdb subscriptions ...`: consumer groups for operators (list, info, create, delete,
parked events and their replay)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import msgspec

from esdb.cli.output import json_line, note, table
from esdb.client import Client
from esdb.contracts.subscriptions import SubscriptionInfo


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `esdb subscriptions` and its actions."""
    subs = commands.add_parser(
        "subscriptions", help="manage persistent subscriptions (consumer groups)"
    )
    actions = subs.add_subparsers(dest="subscription_action", required=True)
    listing = actions.add_parser("list", parents=[common], help="every group of the store")
    listing.set_defaults(run=list_groups)
    info = actions.add_parser("info", parents=[common], help="one group in detail")
    info.add_argument("name")
    info.set_defaults(run=group_info)
    create = actions.add_parser("create", parents=[common], help="create a group")
    create.add_argument("name")
    which = create.add_mutually_exclusive_group(required=True)
    which.add_argument("--stream")
    which.add_argument("--category")
    which.add_argument("--event-type")
    which.add_argument("--pattern")
    which.add_argument("--all", action="store_true")
    create.add_argument(
        "--payload",
        metavar="JSON",
        help='payload conditions, e.g. \'[{"path": "a", "exists": true}]\'',
    )
    create.add_argument("--start", default="start", help="start (default), end, or a position")
    create.add_argument("--message-timeout-ms", type=int, default=30_000)
    create.add_argument("--max-retries", type=int, default=10)
    create.add_argument("--max-in-flight", type=int, default=100)
    create.add_argument(
        "--resolve-links", action="store_true", help="deliver linked events, not the links"
    )
    create.set_defaults(run=create_group)
    delete = actions.add_parser("delete", parents=[common], help="delete a group")
    delete.add_argument("name")
    delete.set_defaults(run=delete_group)
    parked = actions.add_parser("parked", parents=[common], help="a group's parked events")
    parked.add_argument("name")
    parked.add_argument("--limit", type=int, default=100, help="most to print (100)")
    parked.set_defaults(run=list_parked)
    replay = actions.add_parser("replay", parents=[common], help="deliver parked events again")
    replay.add_argument("name")
    replay.set_defaults(run=replay_parked)


def _row(info: SubscriptionInfo) -> list[object]:
    selector = msgspec.to_builtins(info.selector)
    return [
        info.subscription,
        json.dumps(selector, separators=(",", ":")),
        info.checkpoint,
        info.lag,
        info.in_flight,
        info.parked,
        len(info.consumers),
    ]


_HEADERS = ["NAME", "SELECTOR", "CHECKPOINT", "LAG", "IN FLIGHT", "PARKED", "CONSUMERS"]


async def list_groups(client: Client, args: argparse.Namespace) -> int:
    """Print every group of the store."""
    groups = await client.list_subscriptions()
    if args.json:
        for info in groups:
            print(json_line(info))
    elif groups:
        print(table(_HEADERS, [_row(info) for info in groups]))
    else:
        note(f"no subscriptions in store {client.store!r}")
    return 0


async def group_info(client: Client, args: argparse.Namespace) -> int:
    """Print one group, with its consumers."""
    info = await client.subscription_info(args.name)
    if args.json:
        print(json_line(info))
        return 0
    print(table(_HEADERS, [_row(info)]))
    if info.consumers:
        rows = [[c.consumer, c.in_flight, f"{c.last_seen_ms} ms ago"] for c in info.consumers]
        print()
        print(table(["CONSUMER", "IN FLIGHT", "LAST SEEN"], rows))
    return 0


async def create_group(client: Client, args: argparse.Namespace) -> int:
    """Create a group and print it."""
    start: int | str = int(args.start) if args.start.isdigit() else args.start
    info = await client.create_subscription(
        args.name,
        stream=args.stream,
        category=args.category,
        event_type=args.event_type,
        pattern=args.pattern,
        all=args.all,
        payload=json.loads(args.payload) if args.payload else None,
        start=start,  # type: ignore[arg-type]  # the server names a bad value
        message_timeout_ms=args.message_timeout_ms,
        max_retries=args.max_retries,
        max_in_flight=args.max_in_flight,
        resolve_links=args.resolve_links,
    )
    print(json_line(info) if args.json else table(_HEADERS, [_row(info)]))
    return 0


async def delete_group(client: Client, args: argparse.Namespace) -> int:
    """Delete a group with its checkpoint and parked events."""
    await client.delete_subscription(args.name)
    note(f"deleted subscription {args.name!r}")
    return 0


async def list_parked(client: Client, args: argparse.Namespace) -> int:
    """Print a group's parked events, by position."""
    shown = 0
    async for parked in client.iter_parked(args.name):
        if shown >= args.limit:
            note("... more (raise --limit to see them)")
            break
        print(
            json_line(parked)
            if args.json
            else f"{parked.position}  {parked.parked:%Y-%m-%dT%H:%M:%SZ}  {parked.reason}"
        )
        shown += 1
    if not shown:
        note(f"no parked events in {args.name!r}")
    return 0


async def replay_parked(client: Client, args: argparse.Namespace) -> int:
    """Deliver a group's parked events again."""
    count = await client.replay_parked(args.name)
    note(f"replaying {count} parked event(s) of {args.name!r}")
    return 0
