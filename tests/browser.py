"""A real Chromium (Debian's `chromium`, driven by Playwright) for the web UI's tests, and the
directory their screenshots are saved in."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

CHROMIUM = "/usr/bin/chromium"
"""Debian's package (`.ci/run` installs it); Playwright cannot download browsers here."""
SCREENSHOTS = Path(
    os.environ.get("ESDB_UI_SCREENSHOTS") or Path(tempfile.gettempdir()) / "esdb-ui-screenshots"
)
"""Where every UI test saves its screenshots (`ESDB_UI_SCREENSHOTS` to change)."""
EXPECT_TIMEOUT_MS = 15_000
"""How long an `expect` waits for the page: generous, as the machine may be busy; a page
that is right passes at once."""
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str:
    """The browser to drive; the test is skipped outside CI when it is missing."""
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does)")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    return path


expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the session."""
    path = chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) at a desktop size."""
    opened = await browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    opened.set_default_timeout(EXPECT_TIMEOUT_MS)
    yield opened
    await opened.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    """A tab of that profile."""
    return await context.new_page()


async def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as `<SCREENSHOTS>/<name>.png`."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
