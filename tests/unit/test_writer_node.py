"""A writer node refuses to run on state the log does not cover."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from esdb.contracts.log import CreateStoreOp, LogEntry
from esdb.services.writer.applier import Applier
from esdb.services.writer.apply import ApplyError
from esdb.services.writer.log import MemoryLog
from esdb.services.writer.node import WriterNode
from esdb.shared.settings import Settings
from esdb.shared.storage.catalog import memory_catalog


async def test_state_ahead_of_the_log_stops_the_writer() -> None:
    catalog = memory_catalog()
    applier = Applier(catalog)
    async with applier.lock:
        applier.apply_locked(1, LogEntry(ops=[CreateStoreOp(store="default")]))
    node = WriterNode(
        Settings(data_dir=Path("/nowhere")), cast(Any, None), MemoryLog(), applier, cast(Any, None)
    )
    with pytest.raises(ApplyError, match="the log was lost"):
        await node.run(asyncio.Event())
