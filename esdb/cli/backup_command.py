"""`esdb backup` and `esdb restore`: a consistent copy of a node's LMDB stores, and that copy
put back as a new node's data directory, whose writer then catches up from the log."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors

from esdb.cli.output import json_line, note
from esdb.cli.progress import Progress, quantity
from esdb.contracts.subjects import IMAGE_BUCKET
from esdb.services.supervisor.preflight import STACK_LOCK_FILE
from esdb.services.supervisor.stack import node_id
from esdb.services.writer.images import latest_image, log_bounds
from esdb.shared.dir_lock import holder
from esdb.shared.nats_connection import connect_once
from esdb.shared.storage.backup import (
    BackupError,
    Manifest,
    check_log_covers,
    read_manifest,
    restore_backup,
    take_backup,
)
from esdb.shared.storage.catalog import SYSTEM_STORE_DIR

COMMANDS = ("backup", "restore")
_NATS_TIMEOUT_S = 5.0


def add_commands(commands: Any) -> None:
    """Add `backup` and `restore` to the `esdb` subcommands."""
    backup = commands.add_parser(
        "backup",
        help="copy a node's stores (running or stopped) into a directory or .tar.gz",
        description=(
            "A consistent copy of every LMDB store of one node (LMDB's compacting copy, taken "
            "in a read transaction, so the node keeps running) and a manifest with the log "
            "sequence it reflects. See docs/backup.md."
        ),
    )
    _node_options(backup)
    backup.add_argument(
        "--out",
        type=Path,
        required=True,
        help="a new directory, or a file ending in .tar.gz",
    )
    backup.add_argument("--json", action="store_true", help="print the manifest as JSON")
    backup.set_defaults(local=backup_node)

    restore = commands.add_parser(
        "restore",
        help="make a backup the data directory of a new or stopped node",
        description=(
            "Unpack and verify a backup into an empty node data directory; the node's writer "
            "then replays the log after the backup's sequence. Stop the node first."
        ),
    )
    restore.add_argument(
        "--from", dest="source", type=Path, required=True, help="the backup (directory or .tar.gz)"
    )
    _node_options(restore)
    restore.add_argument(
        "--force", action="store_true", help="replace a data directory that is not empty"
    )
    restore.add_argument(
        "--nats-url",
        default=None,
        help="check first that the cluster's log still holds every entry after the backup",
    )
    restore.add_argument("--json", action="store_true", help="print the manifest as JSON")
    restore.set_defaults(local=restore_node)


def _node_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="with --node, the data directory given to `esdb up`; without, one node's own "
        "data directory (ESDB_DATA_DIR)",
    )
    parser.add_argument(
        "--node", type=int, default=None, help="the node's number in `esdb up` (its node<N>)"
    )


def run(args: argparse.Namespace) -> int:
    """Run `backup` or `restore`; a refusal prints `error: <why>` and exits 1."""
    try:
        code: int = args.local(args)
        return code
    except BackupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def backup_node(args: argparse.Namespace) -> int:
    """`esdb backup`."""
    node_dir = _node_dir(args.data_dir, args.node)
    if not (node_dir / SYSTEM_STORE_DIR).is_dir():
        nodes = sorted(p.name for p in args.data_dir.glob("node*") if p.is_dir())
        hint = f"; pick one with --node N ({', '.join(nodes)})" if nodes and not args.node else ""
        raise BackupError(f"{node_dir} holds no esdb node data{hint}")
    started = time.monotonic()
    with Progress("backup", unit="bytes") as progress:
        manifest = take_backup(node_dir, args.out, reporter=progress, node=node_dir.name)
    if args.json:
        print(json_line(manifest))
    else:
        size = sum(s.bytes for s in manifest.stores)
        print(
            f"backed up {manifest.node} at log sequence {manifest.sequence}: "
            f"{_stores_text(manifest)}, {quantity(size, 'bytes')} in "
            f"{time.monotonic() - started:.1f} s -> {args.out}"
        )
    return 0


def restore_node(args: argparse.Namespace) -> int:
    """`esdb restore`."""
    target = _node_dir(args.data_dir, args.node)
    if args.node is None and _is_stack_dir(target):
        raise BackupError(
            f"{target} is the data directory of an `esdb up` stack; name the node with --node N"
        )
    if args.node is not None:
        _refuse_running_writer(args.data_dir, args.node)
    manifest = read_manifest(args.source)
    if args.nats_url:
        first, last, image = asyncio.run(_log_state(args.nats_url))
        check_log_covers(manifest.sequence, first, last, image)
    with Progress("restore", unit="bytes") as progress:
        restore_backup(args.source, target, force=args.force, reporter=progress)
    if args.json:
        print(json_line(manifest))
    else:
        print(
            f"restored the backup of {manifest.node} (log sequence {manifest.sequence}, taken "
            f"{manifest.created:%Y-%m-%d %H:%M:%S} UTC) into {target}: {_stores_text(manifest)}"
        )
        print(f"on start, the node's writer replays the log after sequence {manifest.sequence}")
    if not args.nats_url:
        note(
            "the log was not checked: if it no longer holds entry "
            f"{manifest.sequence + 1}, the writer restores the cluster's latest image over this "
            "backup, or refuses to start (give --nats-url to check now)"
        )
    return 0


def _node_dir(data_dir: Path, node: int | None) -> Path:
    if node is None:
        return data_dir
    if node < 1:
        raise BackupError(f"--node must be 1 or more, not {node}")
    return data_dir / node_id(node)


def _is_stack_dir(path: Path) -> bool:
    return (path / "nats").is_dir() or any(path.glob("node[0-9]*/"))


def _refuse_running_writer(data_dir: Path, node: int) -> None:
    """`esdb up` holds the data directory's lock and keeps a pid file per process while it
    runs (a writer may still be stopping after its supervisor is gone)."""
    stack = holder(data_dir / STACK_LOCK_FILE)
    if stack is not None:
        raise BackupError(
            f"{data_dir} is in use by a running esdb up (pid {stack}); stop the stack first"
        )
    pid_file = data_dir / "run" / f"writer-{node_id(node)}.pid"
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass
    raise BackupError(
        f"the writer of {node_id(node)} is running (pid {pid}); stop the stack or the node first"
    )


async def _log_state(url: str) -> tuple[int, int, int | None]:
    """The first and last sequence of the cluster's log ((0, 0) when it has none) and the
    sequence of its latest image (None when it has none)."""

    try:
        nc = await connect_once(url, timeout=_NATS_TIMEOUT_S)
    except (nats.errors.Error, OSError, TimeoutError) as e:
        reason = str(e) or type(e).__name__
        raise BackupError(f"cannot reach NATS at {url} to check the log: {reason}") from e
    js = nc.jetstream(timeout=_NATS_TIMEOUT_S)
    try:
        try:
            first, last = await log_bounds(js)
        except nats.js.errors.NotFoundError:
            return 0, 0, None
        try:
            image = await latest_image(await js.object_store(IMAGE_BUCKET))
        except nats.js.errors.NotFoundError:
            image = None
        return first, last, None if image is None else image.sequence
    except (nats.errors.Error, msgspec.DecodeError) as e:
        raise BackupError(f"cannot read the log's bounds from {url}: {e}") from e
    finally:
        await nc.close()


def _stores_text(manifest: Manifest) -> str:
    names = manifest.store_names()
    noun = "store" if len(names) == 1 else "stores"
    return f"{len(names)} {noun} ({', '.join(names)}) and the system store"
