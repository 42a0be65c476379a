"""A node's disk fills up under its LMDB files: writes fail with a typed error, reads go on,
nothing is corrupted, and once space is freed the node applies what it could not and takes
writes again, with every acknowledged event there exactly once."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from esdb.client import Client, EsdbError, NewEvent, Timeout, Unavailable
from tests.stack import start_stack, wait_until

DISK = "6m"
EVENT_BYTES = 200_000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs (root mounts it; the tests run as root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


async def test_a_full_disk_stops_writes_cleanly_and_they_resume(
    tmp_path: Path, small_disk: Path
) -> None:
    data_dir = tmp_path / "stack"
    data_dir.mkdir()
    (small_disk / "node1").mkdir()
    (data_dir / "node1").symlink_to(small_disk / "node1")  # only the LMDB files are on it
    stack = start_stack(data_dir)
    writer_pid = stack.pid("writer")
    try:
        async with Client.connect(stack.url, timeout=3.0, max_retries=0) as client:
            acked: list[int] = []
            failure: EsdbError | None = None
            payload = "x" * EVENT_BYTES
            for n in range(100):  # 20 MB: more than the disk holds
                try:
                    result = await client.append("big-1", [NewEvent("Big", {"n": n, "p": payload})])
                except (Timeout, Unavailable) as e:
                    failure = e
                    break
                acked.append(result.last_position)
            assert failure is not None, "the disk never filled"
            assert acked, "nothing fit at all"

            # Reads go on while writes cannot.
            page = await client.read_stream("big-1", limit=len(acked) + 5)
            assert [e.position for e in page.events][: len(acked)] == acked
            with pytest.raises((Timeout, Unavailable)):
                await client.append("small-1", [NewEvent("Small", {})])

            async def stalled() -> bool:  # the node says why, and keeps running
                status = await client.cluster_status()
                return any("is stalled" in p and "disk full" in p for p in status.problems)

            await wait_until(stalled, timeout=30, what="cluster_status to report the stall")
            assert stack.pid("writer") == writer_pid

            # Make room (grow the disk): the node applies what waited and takes writes again.
            subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)

            async def writable() -> bool:
                try:
                    await client.append("small-1", [NewEvent("Small", {})])
                except (Timeout, Unavailable):
                    return False
                return True

            await wait_until(writable, timeout=90, what="writes to resume")
            events = (await client.read_stream("big-1", limit=1000)).events
            positions = [e.position for e in events]
            assert positions[: len(acked)] == acked
            assert len(positions) == len(set(positions))  # nothing twice
            assert len(positions) <= len(acked) + 1  # at most the append that failed, once
            assert not (await client.cluster_status()).problems
            assert stack.pid("writer") == writer_pid  # stalled and recovered, never crashed
    finally:
        stack.stop()
