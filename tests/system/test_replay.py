"""A node that lost its LMDB rebuilds identical state by replaying the log."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from tests.stack import connect_api, read_all_events, start_stack


async def test_replay_rebuilds_identical_positions(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    stack = start_stack(data_dir)
    try:
        api = await connect_api(stack.url)
        for n in range(20):
            await api.ok(
                "append",
                {
                    "stream": f"replay{n % 4}-{uuid.uuid4().hex[:4]}",
                    "events": [{"type": "T", "data": {"n": n}}] * (1 + n % 3),
                },
            )
        before = await read_all_events(api)
        await api.nc.close()
    finally:
        assert stack.stop() == 0
    port = int(stack.url.rsplit(":", 1)[1])
    shutil.rmtree(data_dir / "node1")  # LMDB gone; the JetStream log remains

    stack = start_stack(data_dir, port=port)
    try:
        api = await connect_api(stack.url)
        after = await read_all_events(api)
        assert after == before
        await api.nc.close()
    finally:
        assert stack.stop() == 0


async def test_memory_mode_starts_fresh(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    for _ in range(2):
        stack = start_stack(data_dir, durability="memory")
        try:
            api = await connect_api(stack.url)
            reply = await api.ok(
                "append",
                {"stream": "mem-1", "expected_version": "no_stream", "events": [{"type": "T"}]},
            )
            assert reply["first_position"] == 1, "memory mode keeps nothing across restarts"
            await api.nc.close()
        finally:
            assert stack.stop() == 0
