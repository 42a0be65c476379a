"""The web UI in a real Chromium against the session's stack (real nats-server, LMDB): what is
appended shows on the stream page, 2,500 events page through, a live page shows an event
within a second, a poison event parks and is delivered again on "replay parked", a stream is
deleted after its confirmation, and empty pages say so. Each page is saved as a screenshot."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from playwright.async_api import BrowserContext, Page, expect

from esdb.client import Client
from esdb.client.consumer import PersistentEvent
from tests.browser import PHONE, screenshot
from tests.stack import Api, Stack, wait_until

DEADLINE_S = 30.0


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def ui(stack: Stack) -> str:
    """The address of the stack's web UI."""
    return stack.ui_url()


async def _append(
    api: Api, stream: str, events: list[dict[str, Any]], store: str = "default"
) -> Any:
    return await api.ok(
        "append", {"stream": stream, "expected_version": "any", "events": events}, store=store
    )


def _stream_url(ui: str, stream: str, **query: str) -> str:
    extra = "".join(f"&{key}={value}" for key, value in query.items())
    return f"{ui}/streams/{quote(stream, safe='')}?store=default{extra}"


async def test_the_stream_page_shows_appended_events(ui: str, api: Api, page: Page) -> None:
    stream = _name("order")
    await _append(
        api,
        stream,
        [
            {
                "type": "OrderPlaced",
                "data": {"total": 12.5, "lines": [1, 2]},
                "metadata": {"by": "ui-test"},
            },
            {"type": "OrderPaid", "data": {"paid": True}},
            {"type": "OrderShipped", "data": {"carrier": "post"}},
        ],
    )
    await page.goto(_stream_url(ui, stream))
    events = page.locator("#events > li")
    await expect(events).to_have_count(3)
    # Newest first.
    await expect(events.nth(0).locator(".type")).to_have_text("OrderShipped")
    await expect(events.nth(2).locator(".type")).to_have_text("OrderPlaced")
    await events.nth(2).locator("summary").click()
    payloads = events.nth(2).locator("pre.payload")
    await expect(payloads.nth(0)).to_contain_text('"total": 12.5')
    await expect(payloads.nth(1)).to_contain_text('"by": "ui-test"')
    await expect(page.locator("#version")).to_have_text("2")
    await screenshot(page, "stream")

    await page.goto(f"{ui}/streams?store=default&q={stream}")
    await expect(page.locator("#streams tbody tr")).to_have_count(1)
    await expect(page.locator("#streams")).to_contain_text(stream)
    await screenshot(page, "streams")


async def test_paging_through_2500_events(ui: str, api: Api, page: Page) -> None:
    stream = _name("big")
    for first in range(0, 2500, 500):
        await _append(api, stream, [{"type": "Tick", "data": {"n": first + i}} for i in range(500)])
    await page.goto(_stream_url(ui, stream, limit="500"))
    seen: list[int] = []
    for _ in range(5):
        rows = page.locator("#events > li")
        await expect(rows).to_have_count(500)
        versions = [
            int(v) for v in await rows.evaluate_all("rows => rows.map(r => r.dataset.version)")
        ]
        seen += versions
        if len(seen) < 2500:
            await page.get_by_role("link", name="Older →").click()
    assert seen == list(range(2499, -1, -1))
    await expect(page.locator(".pager .end")).to_have_text("No older events.")
    await page.get_by_role("link", name="← Newer").click()
    await expect(page.locator("#events > li").first).to_have_attribute("data-version", "999")
    await page.get_by_role("link", name="⇤ Newest").click()
    await expect(page.locator("#events > li").first).to_have_attribute("data-version", "2499")


async def test_a_live_page_shows_an_event_within_a_second(ui: str, api: Api, page: Page) -> None:
    stream = _name("live")
    await page.goto(f"{ui}/live?store=default&kind=stream&value={stream}")
    await expect(page.locator("#live-empty")).to_be_visible()
    await expect(page.locator("#live-state")).to_contain_text("live")
    appended = await _append(api, stream, [{"type": "Pinged", "data": {"at": time.time()}}])
    started = time.monotonic()
    row = page.locator(f'#live-events > li[data-position="{appended["last_position"]}"]')
    await expect(row).to_have_count(1, timeout=1000)
    assert time.monotonic() - started < 1.0
    await expect(row.locator(".type")).to_have_text("Pinged")
    await screenshot(page, "live")

    # Paused, it shows nothing new; resumed, it reads what it missed from the store.
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("#live-state")).to_contain_text("paused")
    missed = await _append(api, stream, [{"type": "WhilePaused", "data": {}} for _ in range(3)])
    await _append(api, _name("other"), [{"type": "Elsewhere", "data": {}}])
    await expect(page.locator("#live-events > li")).to_have_count(1)
    await page.get_by_role("button", name="Resume").click()
    await expect(page.locator("#live-events > li")).to_have_count(4)
    await expect(page.locator("#live-events > li").first).to_have_attribute(
        "data-position", str(missed["last_position"])
    )


async def test_a_long_pause_skips_to_the_newest_events(ui: str, api: Api, page: Page) -> None:
    stream = _name("flood")
    await page.goto(f"{ui}/live?store=default&kind=stream&value={stream}")
    await expect(page.locator("#live-state")).to_contain_text("live")
    await page.get_by_role("button", name="Pause").click()
    for _ in range(6):
        last = await _append(api, stream, [{"type": "Flood", "data": {}} for _ in range(1000)])
    await page.get_by_role("button", name="Resume").click()
    await expect(page.locator("#live-skipped")).to_contain_text("were skipped")
    await expect(page.locator("#live-events > li").first).to_have_attribute(
        "data-position", str(last["last_position"])
    )


async def test_every_event_of_a_category_and_of_the_store_shows_live(
    ui: str, api: Api, page: Page
) -> None:
    category = _name("cat").replace("-", "")
    await page.goto(f"{ui}/live?store=default&kind=category&value={category}")
    await expect(page.locator("#live-state")).to_contain_text("live")
    await _append(api, f"{category}-1", [{"type": "A", "data": {}}])
    await _append(api, _name("elsewhere"), [{"type": "B", "data": {}}])
    await _append(api, f"{category}-2", [{"type": "C", "data": {}}])
    await expect(page.locator("#live-events .type")).to_have_text(["C", "A"])


class PoisonConsumer:
    """A consumer that parks events of type `Poison` with a reason until it is cured, then
    acks them; it records every delivery."""

    def __init__(self) -> None:
        self.cured = False
        self.deliveries: list[PersistentEvent] = []

    async def run(self, client: Client, name: str) -> None:
        async with client.consume(name) as sub:
            async for delivered in sub:
                self.deliveries.append(delivered)
                if delivered.event.event_type == "Poison" and not self.cured:
                    sub.nack(delivered, action="park", reason="poison pill: cannot handle")
                else:
                    sub.ack(delivered)


async def test_a_parked_event_is_delivered_again_on_replay(
    ui: str, stack: Stack, api: Api, page: Page
) -> None:
    stream = _name("pay")
    name = _name("billing")
    # Create the group through the UI's form.
    await page.goto(f"{ui}/subscriptions?store=default")
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Selects").select_option("stream")
    await page.get_by_label("named", exact=True).fill(stream)
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator(".notice")).to_have_text("Subscription created.")
    await expect(page.locator("h1")).to_have_text(name)
    await expect(page.locator("#parked-count")).to_have_text("0")

    consumer = PoisonConsumer()
    async with Client.connect(stack.url) as client:
        task = asyncio.create_task(consumer.run(client, name))
        try:
            appended = await _append(
                api,
                stream,
                [{"type": "Fine", "data": {}}, {"type": "Poison", "data": {"bad": True}}],
            )
            poison = appended["last_position"]

            async def parked_shown() -> bool:
                # The page asks for the count and the list in two requests: the event may be
                # parked between them, so one load can show it listed but not yet counted.
                await page.reload()
                listed = await page.locator(f'#parked tr[data-position="{poison}"]').count()
                counted = await page.locator("#parked-count").text_content()
                return listed == 1 and counted == "1"

            await wait_until(parked_shown, timeout=DEADLINE_S, what="the parked event on its page")
            row = page.locator(f'#parked tr[data-position="{poison}"]')
            await expect(row.locator(".reason")).to_have_text("poison pill: cannot handle")
            await expect(row).to_contain_text(stream)
            await screenshot(page, "subscription")
            delivered_before = sum(d.position == poison for d in consumer.deliveries)

            consumer.cured = True
            await page.get_by_role("button", name="Replay parked").click()
            await expect(page.locator(".notice")).to_have_text("Replaying 1 parked event.")

            async def delivered_again() -> bool:
                return sum(d.position == poison for d in consumer.deliveries) > delivered_before

            await wait_until(delivered_again, timeout=DEADLINE_S, what="the replayed delivery")

            async def parked_gone() -> bool:
                await page.reload()
                return await page.get_by_text("No parked events.").count() == 1

            await wait_until(parked_gone, timeout=DEADLINE_S, what="the parked list to empty")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    await page.goto(f"{ui}/subscriptions?store=default")
    await expect(page.locator("#subscriptions")).to_contain_text(name)
    await screenshot(page, "subscriptions")

    # Delete it, after typing its name.
    await page.goto(f"{ui}/subscriptions/{name}?store=default")
    await page.get_by_role("link", name="Delete subscription…").click()
    await page.get_by_label("to confirm").fill(name)
    await page.get_by_role("button", name=f"Delete {name}").click()
    await expect(page.locator(".notice")).to_have_text(f"Subscription {name} deleted.")


async def test_a_stream_is_deleted_after_the_confirmation(ui: str, api: Api, page: Page) -> None:
    stream = _name("doomed")
    await _append(api, stream, [{"type": "Born", "data": {}}])
    await page.goto(_stream_url(ui, stream))
    await page.get_by_role("link", name="Delete stream…").click()
    await expect(page.locator(".confirm")).to_contain_text(f"Delete {stream}?")
    await page.get_by_label("to confirm").fill("not-the-name")
    await page.get_by_role("button", name=f"Delete {stream}").click()
    await expect(page.locator(".confirm .problem")).to_contain_text(
        f"type the stream's name, {stream}"
    )
    assert (await api.ok("stream_info", {"stream": stream}))["state"] == "active"

    await page.get_by_label("to confirm").fill(stream)
    await page.get_by_role("button", name=f"Delete {stream}").click()
    await expect(page.locator(".notice")).to_have_text(f"Stream {stream} deleted.")
    assert (await api.ok("stream_info", {"stream": stream}))["state"] == "deleted"
    await page.goto(_stream_url(ui, stream))
    await expect(page.locator("#state")).to_have_text("deleted")
    await expect(page.get_by_text("This stream is deleted")).to_be_visible()


async def test_stream_metadata_is_edited_and_bad_json_refused(
    ui: str, api: Api, page: Page
) -> None:
    stream = _name("meta")
    await _append(api, stream, [{"type": "E", "data": {"n": n}} for n in range(5)])
    await page.goto(_stream_url(ui, stream))
    box = page.get_by_label("Metadata (JSON")
    await box.fill('{"max_count": 2,}')
    await page.get_by_role("button", name="Save metadata").click()
    await expect(page.locator("textarea[aria-invalid=true]")).to_have_count(1)
    await expect(page.get_by_role("alert")).to_contain_text("not valid JSON")
    await page.get_by_label("Metadata (JSON").fill('{"max_count": 2, "owner": "ops"}')
    await page.get_by_role("button", name="Save metadata").click()
    await expect(page.locator(".notice")).to_have_text("Metadata saved.")
    await expect(page.locator("#events > li")).to_have_count(2)
    info = await api.ok("stream_info", {"stream": stream})
    assert info["metadata"] == {"max_count": 2, "owner": "ops"}


async def test_pages_without_data_say_so(ui: str, page: Page) -> None:
    store = _name("empty")
    await page.goto(f"{ui}/stores")
    await page.get_by_label("Name", exact=True).fill(store)
    await page.get_by_label("Description").fill("nothing in it")
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator(".notice")).to_have_text(f"Store {store} created.")
    await expect(page.locator("#stores")).to_contain_text("nothing in it")
    await screenshot(page, "stores")

    empty = {
        f"/streams?store={store}": f"No streams in {store} yet",
        f"/subscriptions?store={store}": f"No persistent subscriptions in {store} yet",
        f"/live?store={store}": "Waiting for events",
        f"/streams/nothing-here?store={store}": "There is no stream “nothing-here”",
        f"/streams?store={store}&q=zzz": "No stream starts with “zzz”",
        f"/subscriptions/none?store={store}": "There is no subscription “none”",
    }
    for path, says in empty.items():
        await page.goto(ui + path)
        await expect(page.locator(".empty").first).to_contain_text(says)
        assert await page.locator("tbody tr").count() == 0, path
    await page.goto(f"{ui}/streams?store={store}")
    await screenshot(page, "streams-empty")


async def test_a_projection_is_created_listed_shown_and_refused_when_broken(
    ui: str, api: Api, page: Page
) -> None:
    category, name = f"uiorder{uuid.uuid4().hex[:8]}", _name("orders")
    await _append(api, f"{category}-1", [{"type": "OrderPlaced", "data": {}}] * 3)
    await page.goto(f"{ui}/projections?store=default")
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("Query (JavaScript)").fill(
        f"fromCategory('{category}').when({{\n  $init: () => ({{ count: 0 }}),\n"
        "  OrderPlaced: (s) => { s.count +=  })"
    )
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("alert")).to_contain_text("SyntaxError")
    await page.get_by_label("Query (JavaScript)").fill(
        f"fromCategory('{category}').when({{\n  $init: () => ({{ count: 0 }}),\n"
        "  OrderPlaced: (s) => { s.count += 1; }\n})"
    )
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator(".notice")).to_have_text("Projection saved.")
    await expect(page.locator("#projections")).to_contain_text(name)

    async def counted() -> bool:
        state = await api.ok("projection_state", {"name": name})
        return bool(state["state"] == {"count": 3})

    await wait_until(counted, timeout=DEADLINE_S, what="the projection to count")
    await page.goto(f"{ui}/projections?store=default&show={name}")
    await expect(page.locator("#shown-state")).to_contain_text('"count": 3')
    await expect(page.locator("#projections")).to_contain_text("running")
    await screenshot(page, "projections")


async def test_the_dashboard_shows_the_cluster_and_traffic(ui: str, api: Api, page: Page) -> None:
    await page.goto(f"{ui}/")
    await expect(page.locator("nav a")).to_have_text(
        ["Dashboard", "Streams", "Live", "Subscriptions", "Projections", "Stores"]
    )
    await expect(page.locator("#leader")).to_have_text("node1")
    await expect(page.locator("#consistent")).to_have_text("agree")
    await expect(page.locator("#nodes tbody tr")).to_have_count(1)
    await expect(page.locator("#nodes tbody")).to_contain_text("leader")
    await expect(page.locator("#disk")).to_contain_text("default")
    stream = _name("traffic")
    for _ in range(5):
        await _append(api, stream, [{"type": "T", "data": {}} for _ in range(20)])
    # Pushed by the server (the sampler takes one every 5 s; a rate needs two).
    await expect(page.locator("#appends-now")).not_to_have_text("—", timeout=15_000)
    await expect(page.locator("#appends-line")).to_have_attribute("points", re.compile(r"\d"))
    await screenshot(page, "dashboard")


async def test_bad_input_gets_a_clear_error(ui: str, page: Page) -> None:
    response = await page.goto(f"{ui}/streams?store=default&by=category&q=")
    assert response is not None and response.status == 400
    await expect(page.get_by_role("alert")).to_have_text("name the category to search")
    response = await page.goto(f"{ui}/streams?store=no-such-store")
    assert response is not None and response.status == 404
    await expect(page.get_by_role("alert")).to_contain_text("There is no store 'no-such-store'")
    response = await page.goto(f"{ui}/live?store=default&kind=planet")
    assert response is not None and response.status == 400
    await expect(page.get_by_role("alert")).to_contain_text("follow one of all, category")

    await page.goto(f"{ui}/subscriptions?store=default")
    await page.get_by_label("Name", exact=True).fill("bad name!")
    await page.get_by_role("button", name="Create").click()
    await expect(page.get_by_role("alert")).to_contain_text("is not a valid name")
    await page.get_by_label("Name", exact=True).fill(_name("sub"))
    await page.get_by_label("Selects").select_option("stream")
    await page.get_by_label("named", exact=True).fill("")
    await page.get_by_role("button", name="Create").click()
    await expect(page.get_by_role("alert")).to_contain_text("value is required")


async def test_a_form_from_another_site_is_refused(ui: str, context: BrowserContext) -> None:
    response = await context.request.post(
        f"{ui}/stores",
        form={"store": "evil", "csrf": "guess"},
        headers={"Origin": "http://evil.example"},
    )
    assert response.status == 403
    response = await context.request.post(f"{ui}/stores", form={"store": "evil", "csrf": "guess"})
    assert response.status == 403


@pytest.fixture
async def phone(context: BrowserContext) -> AsyncIterator[Page]:
    """A tab the size of a phone's screen."""
    tab = await context.new_page()
    await tab.set_viewport_size(PHONE)  # type: ignore[arg-type]
    yield tab


async def test_pages_fit_a_phone_screen(ui: str, api: Api, phone: Page) -> None:
    stream = _name("phone-order-with-a-rather-long-stream-name")
    await _append(api, stream, [{"type": "OrderPlaced", "data": {"customer": "x" * 200}}])
    for name, path in (
        ("phone-dashboard", "/"),
        ("phone-streams", "/streams?store=default"),
        ("phone-stream", f"/streams/{stream}?store=default"),
        ("phone-live", "/live?store=default"),
        ("phone-subscriptions", "/subscriptions?store=default"),
        ("phone-stores", "/stores"),
    ):
        await phone.goto(ui + path)
        if name == "phone-stream":
            await phone.locator("#events summary").first.click()
        overflow = await phone.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
        await screenshot(phone, name)
