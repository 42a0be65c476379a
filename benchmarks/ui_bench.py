"""The web UI's figures, on a stack of its own (`esdb up`, fsync durability) and a real
Chromium (Debian's `chromium`, driven by Playwright):

1. How fast the stream page opens on a stream of 100k events: the server's answer (HTTP GET,
   median of 20) and the browser's navigation to `load` (median of 10), newest page and
   oldest page, 50 and 500 events a page.
2. Append -> event on screen on the live page: one append at a time (each measured alone),
   from just before the request is sent to when the event's row is in the page's DOM
   (a MutationObserver in the page; the browser and the bench share the clock), p50 and p99.
3. The UI process's CPU per event with the live page open (following every event of the
   store) while appends arrive open-loop at 50 % of the maximum rate a closed-loop probe
   reaches; and the same window with no page open, to show what the live page costs.

`python -m esdb.benchmarks.ui_bench [--events 100000] [--live-appends 200] [--seconds 20]
[--json FILE]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nats
from nats.aio.client import Client as NatsClient
from playwright.async_api import Browser, Page, async_playwright

from esdb.benchmarks.appends import AppendFailed, event_payload
from esdb.benchmarks.figures import LIVE_LOAD
from esdb.benchmarks.open_loop import OpenLoop, esdb_sender
from esdb.benchmarks.stack import process_usage
from esdb.services.supervisor.nats_server import free_port_block

CHROMIUM = "/usr/bin/chromium"
STORE = "default"
READY_TIMEOUT_S = 120.0
PROBE_CLIENTS = 64
PROBE_SECONDS = 8.0
LIVE_SPACING_S = 0.025
"""Between two measured live appends, so each is measured alone."""
_OBSERVE_ROWS = """
() => {
  window.__seen = {};
  window.__rows = 0;
  const list = document.getElementById("live-events");
  new MutationObserver((changes) => {
    const now = Date.now();
    for (const change of changes) for (const node of change.addedNodes) {
      if (node.dataset && node.dataset.position) {
        window.__seen[node.dataset.position] = now;
        window.__rows += 1;
      }
    }
  }).observe(list, { childList: true });
}
"""


@dataclass
class Figures:
    """What the bench measured."""

    date: str
    events_in_stream: int
    page_open: dict[str, dict[str, float]] = field(default_factory=dict)
    live_ms: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)


class UiStack:
    """`esdb up` with its web UI on free ports, in a temporary data directory."""

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="esdb-ui-bench-"))
        self.port = free_port_block(1)
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None
        self.ui = ""

    async def start(self) -> None:
        log = open(self.data_dir / "stack.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "esdb.cli.main", "up", "--data-dir", str(self.data_dir),
            "--nats-port", str(self.port), "--ui-port", "0", "--log-level", "WARNING",
            stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
        log.close()
        assert self.process.stdout is not None
        async with asyncio.timeout(READY_TIMEOUT_S):
            while b"ready" not in (line := await self.process.stdout.readline()):
                if not line:
                    raise SystemExit(f"esdb up failed; see {self.data_dir / 'stack.log'}")
        self.ui = (self.data_dir / "run" / "ui.url").read_text().strip()

    def ui_cpu_s(self) -> float:
        """CPU seconds the UI process has used."""
        pid = int((self.data_dir / "run" / "ui.pid").read_text())
        usage = process_usage("ui", pid)
        assert usage is not None
        return usage.cpu_s

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _append_many(nc: NatsClient, stream: str, events: int, say: Any) -> None:
    data = json.loads(event_payload())
    batch = 1000
    for first in range(0, events, batch):
        body = {
            "stream": stream,
            "expected_version": "any",
            "events": [{"type": "Tick", "data": {**data, "n": first + i}} for i in range(batch)],
        }
        reply = await nc.request(f"esdb.api.{STORE}.append", json.dumps(body).encode(), timeout=30)
        assert b'"error"' not in reply.data[:20], reply.data
        if (first // batch) % 20 == 0:
            say(f"  {first + batch:,} events appended")


async def _page_open(
    stack: UiStack, browser: Browser, stream: str, say: Any
) -> dict[str, dict[str, float]]:
    """Server time (HTTP GET) and browser time (navigation to load) of the stream page."""
    out: dict[str, dict[str, float]] = {}
    cases = {
        "newest, 50 a page": f"{stack.ui}/streams/{stream}?store={STORE}",
        "newest, 500 a page": f"{stack.ui}/streams/{stream}?store={STORE}&limit=500",
        "oldest, 50 a page": f"{stack.ui}/streams/{stream}?store={STORE}&from=49",
    }
    async with aiohttp.ClientSession() as http:
        page = await browser.new_page()
        for label, url in cases.items():
            served = []
            for _ in range(20):
                started = time.perf_counter()
                async with http.get(url) as response:
                    await response.read()
                    assert response.status == 200
                served.append((time.perf_counter() - started) * 1000)
            loads = []
            for _ in range(10):
                await page.goto(url, wait_until="load")
                timing = await page.evaluate(
                    "() => performance.getEntriesByType('navigation')[0].toJSON()"
                )
                loads.append(timing["loadEventEnd"] - timing["startTime"])
            out[label] = {
                "server_median_ms": round(statistics.median(served), 1),
                "server_p90_ms": round(_percentile(served, 90), 1),
                "browser_load_median_ms": round(statistics.median(loads), 1),
            }
            say(f"  {label}: {out[label]}")
        await page.close()
    return out


async def _open_live(browser: Browser, url: str) -> Page:
    page = await browser.new_page()
    await page.goto(url)
    await page.wait_for_function(
        "document.getElementById('live-state').textContent.startsWith('live')"
    )
    await page.evaluate(_OBSERVE_ROWS)
    return page


async def _live_latency(
    stack: UiStack, browser: Browser, nc: NatsClient, appends: int
) -> dict[str, float]:
    """Append -> row in the live page's DOM, one append at a time."""
    stream = "latency-1"
    page = await _open_live(browser, f"{stack.ui}/live?store={STORE}&kind=stream&value={stream}")
    sent: dict[int, float] = {}
    for i in range(appends):
        body = {"stream": stream, "events": [{"type": "Ping", "data": {"i": i}}]}
        at = time.time() * 1000
        reply = json.loads(
            (
                await nc.request(f"esdb.api.{STORE}.append", json.dumps(body).encode(), timeout=10)
            ).data
        )
        sent[reply["last_position"]] = at
        await asyncio.sleep(LIVE_SPACING_S)
    deadline = time.monotonic() + 10
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        seen = await page.evaluate("window.__seen")
        if len(seen) >= appends:
            break
        await asyncio.sleep(0.1)
    await page.close()
    latencies = [seen[str(p)] - t for p, t in sent.items() if str(p) in seen]
    return {
        "appends": appends,
        "on_screen": len(latencies),
        "p50": round(_percentile(latencies, 50), 1),
        "p99": round(_percentile(latencies, 99), 1),
        "max": round(max(latencies), 1),
    }


async def _max_rate(nc: NatsClient) -> float:
    """Events/s that `PROBE_CLIENTS` appenders reach, one event an append, closed loop."""
    send = esdb_sender(nc, STORE, lambda i: f"probe-{i % 1000}", event_payload(), 10.0)
    done = 0
    stop_at = time.perf_counter() + PROBE_SECONDS

    async def client(c: int) -> None:
        nonlocal done
        i = c
        while time.perf_counter() < stop_at:
            try:
                await send(i)
                done += 1
            except AppendFailed:
                pass
            i += PROBE_CLIENTS

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(PROBE_CLIENTS)))
    return done / (time.perf_counter() - started)


async def _cpu_per_event(
    stack: UiStack, browser: Browser, nc: NatsClient, seconds: float, say: Any
) -> dict[str, float]:
    """The UI's CPU over an open-loop window at `LIVE_LOAD` of the maximum rate, without and
    with a live page following every event."""
    rate = await _max_rate(nc) * LIVE_LOAD
    say(f"  offering {rate:,.0f} events/s ({LIVE_LOAD:.0%} of the probe's maximum)")
    payload = event_payload()
    out: dict[str, float] = {"offered_events_per_s": round(rate, 1)}
    for label, with_page in (("no page open", False), ("live page open", True)):
        page = await _open_live(browser, f"{stack.ui}/live?store={STORE}") if with_page else None
        loop = OpenLoop(
            esdb_sender(nc, STORE, lambda i: f"load-{i % 100}", payload, 10.0),
            rate,
            int(rate * seconds),
            label,
        )
        cpu_before = stack.ui_cpu_s()
        await loop.run()
        shown = last_shown = 0
        if page is not None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                shown = int(
                    await page.evaluate(
                        "document.getElementById('live-events').dataset.received || 0"
                    )
                )
                if shown >= loop.figures().appended and shown == last_shown:
                    break
                last_shown = shown
                await asyncio.sleep(0.2)
            await page.close()
        cpu = stack.ui_cpu_s() - cpu_before
        sent = loop.figures()
        # Per event the UI relayed (what the page received: every committed event, including
        # those whose append timed out), or, with no page, per event committed.
        events = shown if with_page else sent.appended
        key = "page" if with_page else "idle"
        out[f"{key}_appended"] = sent.appended
        out[f"{key}_append_errors"] = sent.errors
        out[f"{key}_sent_events_per_s"] = sent.sent_rate
        if with_page:
            out["page_events_received"] = shown
        out[f"{key}_ui_cpu_s"] = round(cpu, 3)
        per_event = cpu / events * 1e6 if events else 0.0
        out[f"{key}_ui_cpu_us_per_event"] = round(per_event, 1)
        say(
            f"  {label}: {sent.appended:,} appended ({sent.errors} failed), {events:,} counted, "
            f"UI CPU {cpu:.2f} s ({per_event:.1f} us/event)"
        )
    return out


async def run(events: int, live_appends: int, seconds: float, say: Any) -> Figures:
    """Every phase on one stack; the figures."""
    figures = Figures(date=time.strftime("%Y-%m-%d"), events_in_stream=events)
    stack = UiStack()
    say(f"starting esdb up in {stack.data_dir} ...")
    await stack.start()
    nc = await nats.connect(stack.url)
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox"]
            )
            say(f"appending {events:,} events to one stream ...")
            await _append_many(nc, "big-1", events, say)
            say("stream page:")
            figures.page_open = await _page_open(stack, browser, "big-1", say)
            say(f"live page, {live_appends} appends one at a time:")
            figures.live_ms = await _live_latency(stack, browser, nc, live_appends)
            say(f"  {figures.live_ms}")
            say("UI CPU per event:")
            figures.cpu = await _cpu_per_event(stack, browser, nc, seconds, say)
            await browser.close()
    finally:
        await nc.close()
        await stack.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the bench and print its figures (and write them as JSON with `--json`)."""
    parser = argparse.ArgumentParser(prog="python -m esdb.benchmarks.ui_bench")
    parser.add_argument("--events", type=int, default=100_000, help="events in the big stream")
    parser.add_argument("--live-appends", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0, help="each CPU window")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2

    def say(line: str) -> None:
        print(line, flush=True)

    figures = asyncio.run(run(args.events, args.live_appends, args.seconds, say))
    text = json.dumps(asdict(figures), indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
