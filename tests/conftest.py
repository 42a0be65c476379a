"""Fixtures shared by every test tier."""

from __future__ import annotations

import pytest

from esdb.shared.storage.catalog import Catalog, memory_catalog
from tests.browser import SCREENSHOTS
from tests.builders import create_store


@pytest.fixture
def catalog() -> Catalog:
    """An in-memory catalog whose default store was created by log entry 1."""
    catalog = memory_catalog()
    create_store(catalog)
    return catalog


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start the run's screenshots afresh (once, not in each xdist worker)."""
    if not hasattr(session.config, "workerinput") and SCREENSHOTS.is_dir():
        for old in SCREENSHOTS.glob("*.png"):
            old.unlink()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where the web UI's tests saved their screenshots (test artifacts)."""
    if SCREENSHOTS.is_dir() and any(SCREENSHOTS.glob("*.png")):
        terminalreporter.write_line(f"web UI screenshots: {SCREENSHOTS}")
