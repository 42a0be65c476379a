"""The in-memory lease key, on a clock the test moves, passes the lease contract."""

from __future__ import annotations

import asyncio

import pytest

from esdb.services.writer.lease import MemoryLeaseKey
from tests.lease_contract import LeaseContract, LeaseWorld

TTL_S = 10.0


class TestMemoryLease(LeaseContract):
    @pytest.fixture
    def world(self) -> LeaseWorld:
        now = [1000.0]

        async def tick() -> None:
            now[0] += TTL_S / 20
            await asyncio.sleep(0)

        def clock() -> float:
            return now[0]

        return LeaseWorld([MemoryLeaseKey(TTL_S, clock)], TTL_S, clock, tick)
