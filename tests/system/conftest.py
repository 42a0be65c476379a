"""System tests start their own stacks, since they break them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import browser  # noqa: F401 - the UI tests' browser
from tests.stack import Stack, start_stack


@pytest.fixture
def fresh_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of its own for one test, stopped afterwards whatever happened."""
    running = start_stack(tmp_path / "stack", durability="fsync")
    yield running
    running.stop()
