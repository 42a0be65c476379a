"""The dashboard's figures: the cluster as `_sys.cluster_status` reports it, and appends/s,
reads/s and disk use per store over the last minutes, sampled in the background.

Appends/s come from each store's last position (`_sys.store_status`) sampled every few
seconds: the public API counts no requests. Reads/s come from the readers' request counters
on their Prometheus endpoints (`/metrics`, which `esdb up` lists in `<data-dir>/run/`): the
one figure no API operation reports; without that directory there is no reads/s."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from esdb.client import EsdbError
from esdb.contracts.api import StoreInfo
from esdb.services.ui.access import Account
from esdb.services.ui.present import CounterSeries, RateSeries, human_bytes

log = logging.getLogger(__name__)

SAMPLE_EVERY_S = 5.0
MAX_SAMPLED_STORES = 64
"""Stores whose positions and sizes are sampled (each costs one `store_status`)."""
READ_OPERATIONS = ("read_stream", "read_all")
_READS = re.compile(
    r'^esdb_reader_request_seconds_count\{operation="(read_stream|read_all)"\} ([0-9.e+]+)$',
    re.MULTILINE,
)


def read_counts(metrics_text: str) -> float:
    """Reads answered, from one reader's Prometheus text."""
    return sum(float(value) for _, value in _READS.findall(metrics_text))


class Sampler:
    """Samples every store's position and size, and the readers' read counters, until
    stopped; the UI's own connection (the service user under `--auth`) asks."""

    def __init__(self, own: Account, run_dir: Path | None) -> None:
        self._own = own
        self._run_dir = run_dir
        self.appends = RateSeries()
        self.reads = CounterSeries()
        self.statuses: dict[str, StoreInfo] = {}
        self.sampled_at: datetime | None = None
        self._http: aiohttp.ClientSession | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Sample every `SAMPLE_EVERY_S` until `stop` is set."""
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        try:
            while not stop.is_set():
                try:
                    await self.sample()
                except EsdbError as e:
                    log.info("dashboard sample skipped: %s", e.message)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)
        finally:
            await self._http.close()

    async def sample(self) -> None:
        """One sample of positions, sizes and read counters."""
        system = self._own.client("_sys")
        stores = (await system.list_stores())[:MAX_SAMPLED_STORES]
        answers = await asyncio.gather(
            *(system.store_status(info.store) for info in stores), return_exceptions=True
        )
        statuses = {}
        for info, answer in zip(stores, answers, strict=True):
            if isinstance(answer, StoreInfo):
                statuses[info.store] = answer
            else:
                statuses[info.store] = info
        now = time.monotonic()
        self.statuses = statuses
        self.sampled_at = datetime.now(UTC)
        self.appends.add(now, {name: s.last_position for name, s in statuses.items()})
        counters = await self._read_counters()
        if counters:
            self.reads.add(now, counters)

    async def _read_counters(self) -> dict[str, float]:
        if self._run_dir is None or self._http is None:
            return {}
        counters: dict[str, float] = {}
        for url_file in sorted(self._run_dir.glob("reader-*.http")):
            try:
                url = url_file.read_text().strip()
                async with self._http.get(url + "/metrics") as response:
                    counters[url_file.stem] = read_counts(await response.text())
            except (OSError, aiohttp.ClientError, TimeoutError):
                continue  # restarting, or gone: its next sample counts it again
        return counters

    def figures(self, stores: list[str]) -> dict[str, Any]:
        """What the dashboard shows of `stores`: rates over time and disk use (JSON)."""
        appends = self.appends.rates(stores)
        reads = self.reads.rates()
        rows = []
        for store in stores:
            status = self.statuses.get(store)
            size = status.size_bytes if status else None
            rows.append(
                {
                    "store": store,
                    "last_position": status.last_position if status else None,
                    "size_bytes": size,
                    "size": human_bytes(size),
                }
            )
        return {
            "appends": {"now": appends[-1][1] if appends else None, "points": appends},
            "reads": {"now": reads[-1][1] if reads else None, "points": reads}
            if self._run_dir is not None
            else None,
            "stores": rows,
            "sampled_at": self.sampled_at.isoformat() if self.sampled_at else None,
        }


async def cluster(account: Account) -> dict[str, Any]:
    """The cluster as the session's user may see it: nodes, roles, leader, lag, and whether
    the log hashes agree; `error` when the user may not ask (a tenant) or nobody answers."""
    try:
        status = await account.client("_sys").cluster_status()
    except EsdbError as e:
        return {"error": e.message, "code": e.code.value}
    return {
        "leader": status.leader,
        "consistent": status.consistent,
        "problems": list(status.problems),
        "nodes": [
            {
                "node_id": node.node_id,
                "host": node.host,
                "role": node.role,
                "applied_sequence": node.applied_sequence,
                "lag": node.lag,
                "stalled": node.stalled,
                "log_hash": node.log_hash[:12],
            }
            for node in sorted(status.nodes, key=lambda n: n.node_id)
        ],
        "log": None
        if status.log is None
        else {
            "first_sequence": status.log.first_sequence,
            "last_sequence": status.log.last_sequence,
            "leader": status.log.leader,
        },
    }
