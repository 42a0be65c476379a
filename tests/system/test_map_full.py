"""A store's LMDB map fills up: writes fail with a typed error, reads go on, the node says why,
and once the map is raised (ESDB_LMDB_MAP_BYTES) and the stack restarted, the write that was
logged but not applied lands and writes resume, with every acknowledged event there once."""

from __future__ import annotations

from pathlib import Path

from esdb.client import Client, EsdbError, NewEvent, Timeout, Unavailable
from tests.stack import start_stack, wait_until

SMALL_MAP = str(2 << 20)
LARGE_MAP = str(256 << 20)
EVENT_BYTES = 100_000


async def test_a_full_map_stalls_writes_until_it_is_raised(tmp_path: Path) -> None:
    stack = start_stack(tmp_path, env={"ESDB_LMDB_MAP_BYTES": SMALL_MAP})
    acked: list[int] = []
    try:
        async with Client.connect(stack.url, timeout=3.0, max_retries=0) as client:
            failure: EsdbError | None = None
            for n in range(100):  # 10 MB into a 2 MiB map
                try:
                    result = await client.append(
                        "big-1", [NewEvent("Big", {"n": n, "p": "x" * EVENT_BYTES})]
                    )
                except (Timeout, Unavailable) as e:
                    failure = e
                    break
                acked.append(result.last_position)
            assert failure is not None and acked

            page = await client.read_stream("big-1", limit=200)  # reads go on
            assert [e.position for e in page.events][: len(acked)] == acked

            async def stalled() -> bool:
                problems = (await client.cluster_status()).problems
                return any("is stalled" in p and "LMDB map" in p for p in problems)

            await wait_until(stalled, timeout=30, what="cluster_status to report the full map")
    finally:
        assert stack.stop() == 0, stack.log_tail()

    stack = start_stack(tmp_path, env={"ESDB_LMDB_MAP_BYTES": LARGE_MAP})
    try:
        async with Client.connect(stack.url, timeout=3.0) as client:

            async def writable() -> bool:
                try:
                    await client.append("small-1", [NewEvent("Small", {})])
                except (Timeout, Unavailable):
                    return False
                return True

            await wait_until(writable, timeout=60, what="writes to resume")
            positions = [e.position for e in (await client.read_stream("big-1", limit=200)).events]
            assert positions[: len(acked)] == acked
            assert len(positions) == len(set(positions)) <= len(acked) + 1
            assert not (await client.cluster_status()).problems
    finally:
        assert stack.stop() == 0, stack.log_tail()
