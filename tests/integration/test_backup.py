"""Backup, restore and catch-up from the log, and export/import round trips, against real
stacks: the CLI as a user runs it (a subprocess), the checks through the Python client."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest

from esdb.client import Client, NewEvent, RecordedEvent, StreamDeleted, StreamNotFound
from esdb.contracts.subjects import LOG_STREAM
from esdb.shared.storage.backup import (
    DATA_FILE,
    MANIFEST,
    STORES_DIR,
    BackupError,
    read_manifest,
    restore_backup,
    take_backup,
)
from esdb.shared.storage.catalog import applied_on_disk
from tests.stack import Stack, start_stack, wait_until

ESDB = str(Path(sys.executable).parent / "esdb")


async def esdb(*args: str | Path, url: str | None = None) -> tuple[int, str, str]:
    """Run `esdb ARGS` without blocking the loop: exit code, stdout, stderr."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ESDB_")}
    if url is not None:
        environment["ESDB_URL"] = url
    process = await asyncio.create_subprocess_exec(
        ESDB,
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def ok(*args: str | Path, url: str | None = None) -> str:
    code, out, err = await esdb(*args, url=url)
    assert code == 0, err
    return out


async def every_event(client: Client) -> list[RecordedEvent]:
    return [event async for event in client.iter_all(page_size=1000)]


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def _append(client: Client, stream: str, count: int, acked: list[str]) -> None:
    for n in range(count):
        event_id = str(uuid.uuid4())
        await client.append(stream, [NewEvent("Counted", {"n": n}, event_id=event_id)])
        acked.append(event_id)


async def test_a_backup_of_a_running_node_restores_and_catches_up_from_the_log(
    tmp_path: Path,
) -> None:
    data = tmp_path / "stack"
    archive = tmp_path / "node1.tar.gz"
    acked: dict[str, list[str]] = {"default": [], "orders": []}
    stack = start_stack(data)
    try:
        async with (
            Client.connect(stack.url) as default,
            Client.connect(stack.url, store="orders") as orders,
        ):
            await default.create_store("orders")
            for n in range(5):
                await _append(default, f"before-{n}", 20, acked["default"])
                await _append(orders, f"order-{n}", 5, acked["orders"])

            # The backup runs while appends go on; they land before, during and after it.
            stop = asyncio.Event()

            async def keep_appending() -> None:
                n = 0
                while not stop.is_set():
                    await _append(default, f"during-{n % 3}", 1, acked["default"])
                    n += 1

            appender = asyncio.create_task(keep_appending())
            started = len(acked["default"])
            await wait_until(
                _grown(acked["default"], started + 5), timeout=30, what="appends before"
            )
            manifest = json.loads(
                await ok("backup", "--data-dir", data, "--node", "1", "--out", archive, "--json")
            )
            taken = len(acked["default"])
            await wait_until(_grown(acked["default"], taken + 5), timeout=30, what="appends after")
            stop.set()
            await appender
            await _append(orders, "order-late", 7, acked["orders"])
    finally:
        assert stack.stop() == 0, stack.log_tail()

    assert {s["name"] for s in manifest["stores"]} == {"_system", "default", "orders"}
    by_name = {s["name"]: s for s in manifest["stores"]}
    assert 100 < by_name["default"]["last_position"] < len(acked["default"])
    assert by_name["orders"]["last_position"] == 25

    code, _, err = await esdb("restore", "--from", archive, "--data-dir", data, "--node", "1")
    assert code == 1 and "is not empty" in err
    shutil.rmtree(data / "node1")  # the node's disk is lost; the log (JetStream) is not
    await ok("restore", "--from", archive, "--data-dir", data, "--node", "1")
    assert applied_on_disk(data / "node1") == manifest["sequence"]

    stack = start_stack(data)
    try:
        code, _, err = await esdb(
            "restore", "--from", archive, "--data-dir", data, "--node", "1", "--force"
        )
        assert code == 1 and "in use by a running esdb up" in err
        async with (
            Client.connect(stack.url) as default,
            Client.connect(stack.url, store="orders") as orders,
        ):
            for client, store in ((default, "default"), (orders, "orders")):
                events = await every_event(client)
                assert [e.event_id for e in events] == acked[store]  # each once, in order
                assert [e.position for e in events] == list(range(1, len(events) + 1))
            await _append(default, "after-restore", 3, acked["default"])
            events = await every_event(default)
            assert [e.event_id for e in events] == acked["default"]
        await _refuses_a_backup_the_log_was_purged_below(stack, archive, tmp_path, manifest)
    finally:
        assert stack.stop() == 0, stack.log_tail()


def _grown(items: list[str], size: int) -> Any:
    async def check() -> bool:
        return len(items) >= size

    return check


async def _refuses_a_backup_the_log_was_purged_below(
    stack: Stack, archive: Path, tmp_path: Path, manifest: dict[str, Any]
) -> None:
    """`--nats-url` checks the log still holds every entry after the backup's sequence."""
    await ok("restore", "--from", archive, "--data-dir", tmp_path / "covered", url=None)
    await ok(
        "restore",
        "--from",
        archive,
        "--data-dir",
        tmp_path / "checked",
        "--nats-url",
        stack.url,
    )
    nc = await nats.connect(stack.url)
    try:
        js = nc.jetstream()
        last = (await js.stream_info(LOG_STREAM)).state.last_seq
        await js.purge_stream(LOG_STREAM, seq=last)  # as compaction would, with no image
    finally:
        await nc.close()
    target = tmp_path / "purged"
    code, _, err = await esdb(
        "restore", "--from", archive, "--data-dir", target, "--nats-url", stack.url
    )
    assert code == 1
    assert f"entries {manifest['sequence'] + 1}..{last - 1} were purged" in err
    assert not target.exists()


async def test_restore_verifies_the_backup_and_replaces_only_when_forced(
    stack: Stack, tmp_path: Path
) -> None:
    node = stack.data_dir / "node1"
    copy = tmp_path / "copy"
    manifest = take_backup(node, copy)
    assert read_manifest(copy) == manifest
    assert (copy / MANIFEST).is_file()
    with pytest.raises(BackupError, match="already exists"):
        take_backup(node, copy)
    with pytest.raises(BackupError, match="no esdb node data"):
        take_backup(stack.data_dir, tmp_path / "nothing")

    target = tmp_path / "node"
    assert restore_backup(copy, target) == manifest
    for entry in manifest.stores:
        restored = (target / entry.name / DATA_FILE).read_bytes()
        assert restored == (copy / STORES_DIR / entry.name / DATA_FILE).read_bytes()
    assert sorted(p.name for p in target.iterdir()) == sorted(s.name for s in manifest.stores)
    assert applied_on_disk(target) == manifest.sequence

    with pytest.raises(BackupError, match="not empty"):
        restore_backup(copy, target)
    (target / "stray").write_text("left from before")
    restore_backup(copy, target, force=True)
    assert not (target / "stray").exists()

    damaged = tmp_path / "damaged"
    shutil.copytree(copy, damaged)
    data_file = damaged / STORES_DIR / "default" / DATA_FILE
    raw = bytearray(data_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data_file.write_bytes(bytes(raw))
    with pytest.raises(BackupError, match="'default' in the backup is damaged"):
        restore_backup(damaged, tmp_path / "never")
    assert not (tmp_path / "never").exists()
    with pytest.raises(BackupError, match="not an esdb backup"):
        restore_backup(tmp_path / "node", tmp_path / "never")


@pytest.fixture
async def source(stack: Stack) -> AsyncIterator[Client]:
    """A new store filled with every kind of payload, streams interleaved."""
    name = _name("src")
    async with Client.connect(stack.url, store=name) as client:
        await client.create_store(name)
        for n in range(30):
            stream = f"order-{n % 4}"
            await client.append(
                stream,
                [
                    NewEvent("Placed", {"n": n, "text": "caf\u00e9"}, metadata={"by": n}),
                    NewEvent("Noted", b"\x00\xff\n binary", content_type="application/x-bin"),
                ],
            )
            if n % 10 == 0:
                await client.append(
                    f"odd-{n}",
                    [
                        NewEvent("Pretty", b'{\n  "spaced": true\n}'),
                        NewEvent("Padded", b'  {"a": 1} ', metadata=b"null"),
                        NewEvent("Empty", None),
                        NewEvent("Text", b"plain text", content_type="text/plain"),
                    ],
                )
        yield client


def _content(events: list[RecordedEvent]) -> list[tuple[Any, ...]]:
    return [
        (
            e.event_id,
            e.stream_id,
            e.version,
            e.position,
            e.event_type,
            e.data,
            e.metadata,
            e.content_type,
        )
        for e in events
    ]


@asynccontextmanager
async def _new_store(stack: Stack) -> AsyncIterator[Client]:
    """A client of a store just created for an import to fill."""
    target = _name("dst")
    async with Client.connect(stack.url, store=target) as copy:
        await copy.create_store(target)
        yield copy


async def _import_json(stack: Stack, copy: Client, exported: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(
        await ok("import", "--store", copy.store, exported, "--json", url=stack.url)
    )
    return report


async def test_export_then_import_into_another_store_round_trips_and_reruns_skip(
    stack: Stack, source: Client, tmp_path: Path
) -> None:
    exported = tmp_path / "events.jsonl"
    summary = json.loads(
        await ok("export", "--store", source.store, "--out", exported, "--json", url=stack.url)
    )
    original = await every_event(source)
    event_lines = [line for line in exported.read_text().splitlines() if '"event_id"' in line]
    assert summary["events"] == len(original) == len(event_lines) == 72
    assert summary["last_position"] == original[-1].position

    async with _new_store(stack) as copy:
        report = await _import_json(stack, copy, exported)
        assert (report["imported"], report["skipped"]) == (72, 0)
        assert _content(await every_event(copy)) == _content(original)

        again = await _import_json(stack, copy, exported)
        assert (again["imported"], again["skipped"]) == (0, 72)
        assert _content(await every_event(copy)) == _content(original)


async def test_streams_export_gzipped_and_a_truncated_stream_imports_exactly_or_renumbered(
    stack: Stack, source: Client, tmp_path: Path
) -> None:
    exported = tmp_path / "two.jsonl.gz"
    await ok(
        "export",
        "--store",
        source.store,
        "--stream",
        "order-1",
        "--stream",
        "odd-10",
        "--out",
        exported,
        url=stack.url,
    )
    async with _new_store(stack) as copy:
        target = copy.store
        out = await ok("import", "--store", target, exported, url=stack.url)
        assert out.startswith("restored 20 events, skipped 0 already stored (2 streams")
        for stream in ("order-1", "odd-10"):
            want = [(e.event_id, e.version, e.data) async for e in source.iter_stream(stream)]
            got = [(e.event_id, e.version, e.data) async for e in copy.iter_stream(stream)]
            assert got == want

        await source.set_stream_metadata("order-2", {"truncate_before": 4})
        truncated = tmp_path / "truncated.jsonl"
        await ok(
            "export",
            "--store",
            source.store,
            "--stream",
            "order-2",
            "--out",
            truncated,
            url=stack.url,
        )
        # Exactly: the same versions, the hidden prefix stays truncated.
        await ok("import", "--store", target, truncated, url=stack.url)
        versions = [(e.version, e.event_type) async for e in copy.iter_stream("order-2")]
        assert versions == [(v, "Placed" if v % 2 == 0 else "Noted") for v in range(4, 14)]
        assert (await copy.stream_info("order-2")).metadata == {"truncate_before": 4}
    async with _new_store(stack) as renumbered:
        await ok("import", "--store", renumbered.store, truncated, "--renumber", url=stack.url)
        versions = [(e.version, e.event_type) async for e in renumbered.iter_stream("order-2")]
        assert versions == [(v, "Placed" if v % 2 == 0 else "Noted") for v in range(10)]
        # Source versions 4..13 are the target's 0..9: truncate_before 4 moved to 0 with them.
        assert (await renumbered.stream_info("order-2")).metadata == {"truncate_before": 0}


async def _states(client: Client, streams: list[str]) -> dict[str, tuple[Any, ...]]:
    found: dict[str, tuple[Any, ...]] = {}
    for stream in streams:
        try:
            info = await client.stream_info(stream)
        except StreamNotFound:
            continue
        found[stream] = (info.version, info.state, info.metadata)
    return found


async def test_stream_metadata_deletes_and_tombstones_export_and_import(
    stack: Stack, source: Client, tmp_path: Path
) -> None:
    await source.set_stream_metadata("order-0", {"max_count": 100, "owner": "ops"})
    await source.delete_stream("order-1")
    await source.tombstone_stream("order-2")
    streams = ["order-0", "order-1", "order-2", "order-3"]
    exported = tmp_path / "states.jsonl"
    summary = json.loads(
        await ok("export", "--store", source.store, "--out", exported, "--json", url=stack.url)
    )
    assert summary["streams"] == 7
    visible = await every_event(source)
    assert {e.stream_id for e in visible} == {"order-0", "order-3"} | {
        f"odd-{n}" for n in (0, 10, 20)
    }

    async with _new_store(stack) as copy:
        report = await _import_json(stack, copy, exported)
        assert report["stream_states"] == 7
        # Each stream as it was: order-1 soft-deleted and order-2 tombstoned at their versions.
        assert await _states(copy, streams) == await _states(source, streams)
        assert (await _states(copy, streams))["order-1"][:2] == (15, "deleted")
        with pytest.raises(StreamDeleted):
            await copy.append("order-2", [NewEvent("Late", {})])
        without_positions = [c[:3] + c[4:] for c in _content(await every_event(copy))]
        assert without_positions == [c[:3] + c[4:] for c in _content(visible)]

        again = await _import_json(stack, copy, exported)
        assert (again["imported"], again["skipped"]) == (0, len(visible))
        text = await ok("import", "--store", copy.store, exported, url=stack.url)
        assert ", 7 stream states, " in text
        assert await _states(copy, streams) == await _states(source, streams)
