"""The web UI of a stack started with `esdb up --auth`: it asks for an esdb user and acts as
that user, so a tenant sees and touches only its own stores, and an admin sees them all."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, Page, expect

from esdb.client import Client, NewEvent
from esdb.services.supervisor.nats_server import free_port_block
from tests.browser import DESKTOP, EXPECT_TIMEOUT_MS, screenshot
from tests.stack import Stack, launch_stack


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("ui-auth")
    port = free_port_block(1)
    args = [sys.executable, "-m", "esdb.cli.main", "up", "--data-dir", str(data_dir)]
    args += ["--nats-port", str(port), "--durability", "memory", "--auth"]
    stack = launch_stack(args, url=f"nats://127.0.0.1:{port}", data_dir=data_dir, what="up")
    yield stack
    assert stack.stop() == 0, stack.log_tail()


def _password(stack: Stack, name: str, *options: str) -> str:
    """`esdb user add`: the new user's password."""
    done = subprocess.run(
        [sys.executable, "-m", "esdb.cli.main", "user", "add", name, *options,
         "--data-dir", str(stack.data_dir), "--url", stack.url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip().split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]


@pytest.fixture(scope="module")
async def users(secured: Stack) -> AsyncIterator[dict[str, str]]:
    admin = (secured.data_dir / "auth" / "admin.creds").read_text().strip()
    async with Client.connect(secured.url.replace("://", f"://{admin}@", 1)) as client:
        await client.create_store("alpha")
        await client.create_store("beta")
    yield {
        "admin": admin.split(":", 1)[1],
        "tenant-a": _password(secured, "tenant-a", "--store", "alpha"),
    }


@pytest.fixture
async def tab(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    yield await context.new_page()
    await context.close()


async def _log_in(page: Page, ui: str, user: str, password: str) -> None:
    await page.goto(f"{ui}/stores")
    await expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)stores$"))
    await page.get_by_label("User").fill(user)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()


async def test_a_tenant_sees_only_its_own_stores(
    secured: Stack, users: dict[str, str], tab: Page
) -> None:
    ui = secured.ui_url()
    await _log_in(tab, ui, "tenant-a", users["tenant-a"])
    await expect(tab).to_have_url(f"{ui}/stores")
    await expect(tab.locator("#stores tbody tr")).to_have_count(1)
    await expect(tab.locator("#stores")).to_contain_text("alpha")
    await expect(tab.locator("select[name=store] option")).to_have_text(["alpha"])
    await expect(tab.get_by_text("Creating stores needs an admin account.")).to_be_visible()
    await expect(tab.locator(".user")).to_have_text("tenant-a")
    await screenshot(tab, "tenant-stores")

    for path in ("/streams?store=beta", "/streams?store=default", "/live?store=beta"):
        response = await tab.goto(ui + path)
        assert response is not None and response.status == 404, path
        await expect(tab.get_by_role("alert")).to_contain_text("may not use it")
    # Its own store works, and the cluster's management is not its business.
    response = await tab.goto(f"{ui}/streams")
    assert response is not None and response.status == 200
    await expect(tab.locator("h1")).to_contain_text("alpha")
    await tab.goto(f"{ui}/")
    await expect(tab.locator("#cluster")).to_contain_text("not available to this account")
    await expect(tab.locator("#disk tbody tr")).to_have_count(1)

    await tab.get_by_role("button", name="Log out").click()
    await expect(tab).to_have_url(f"{ui}/login")
    await tab.goto(f"{ui}/streams?store=alpha")
    await expect(tab).to_have_url(re.compile(r"/login\?next=.*streams.*alpha$"))


async def test_an_admin_sees_every_store(secured: Stack, users: dict[str, str], tab: Page) -> None:
    ui = secured.ui_url()
    await _log_in(tab, ui, "admin", users["admin"])
    await expect(tab.locator("#stores")).to_contain_text("beta")
    await expect(tab.locator("select[name=store] option")).to_have_text(
        ["alpha", "beta", "default"]
    )
    await tab.goto(f"{ui}/")
    await expect(tab.locator("#leader")).to_have_text("node1")


async def test_a_wrong_password_is_refused(
    secured: Stack, users: dict[str, str], tab: Page
) -> None:
    ui = secured.ui_url()
    await _log_in(tab, ui, "tenant-a", "not-the-password")
    await expect(tab.get_by_role("alert")).to_have_text("wrong user name or password")
    await screenshot(tab, "login")
    response = await tab.goto(f"{ui}/dashboard/events")
    assert response is not None and response.url.startswith(f"{ui}/login")


async def test_live_events_come_as_the_tenant(
    secured: Stack, users: dict[str, str], tab: Page
) -> None:
    ui = secured.ui_url()
    await _log_in(tab, ui, "tenant-a", users["tenant-a"])
    await tab.goto(f"{ui}/live?store=alpha")
    await expect(tab.locator("#live-state")).to_contain_text("live")
    tenant = f"nats://tenant-a:{users['tenant-a']}@{secured.url.split('://', 1)[1]}"
    async with Client.connect(tenant, store="alpha") as client:
        appended = await client.append("order-7", [NewEvent("Placed", {"n": 7})])
    await expect(
        tab.locator(f'#live-events > li[data-position="{appended.last_position}"]')
    ).to_have_count(1)
