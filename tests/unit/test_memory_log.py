"""The in-memory log passes the replicated log contract."""

from __future__ import annotations

import pytest

from esdb.services.writer.log import MemoryLog
from tests.log_contract import LogContract


class TestMemoryLog(LogContract):
    @pytest.fixture
    def logs(self) -> tuple[MemoryLog, MemoryLog]:
        log = MemoryLog()
        return log, log  # every node of a process shares the one list
