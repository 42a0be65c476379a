"""While this node's writer leads: one `ProjectionRunner` per enabled, healthy projection of
every store, started again when its definition changes or after a failed commit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from esdb.contracts.errors import NotFound
from esdb.contracts.projections import StoredProjection, stored_projection_decoder
from esdb.services.projection.runner import Commit, Limits, ProjectionRunner
from esdb.shared.cluster_view import ClusterView, follow_leader
from esdb.shared.storage import item_keys
from esdb.shared.storage.port import StoreReader
from esdb.shared.tasks import cancel_and_wait
from esdb.shared.wakeup import Wakeup, wait_any

log = logging.getLogger(__name__)

RESTART_S = 0.5
"""How long a runner whose commit failed waits before it starts again from what is stored."""
RECONCILE_EVERY_S = 0.25
"""How often the projections are listed: a definition change starts or stops its runner at
most this long after its log entry (and a runner that ended is started again at once)."""
_PAGE = 1000


@dataclass
class _Running:
    record: StoredProjection
    task: asyncio.Task[None]


def stored_projections(reader: StoreReader) -> dict[str, StoredProjection]:
    """Every projection record of a store, by name."""
    found: dict[str, StoredProjection] = {}
    after: bytes | None = None
    while True:
        page = reader.items(
            item_keys.PROJECTIONS, item_keys.projection_prefix(), after=after, limit=_PAGE
        )
        for key, raw in page:
            found[item_keys.projection_name(key)] = stored_projection_decoder.decode(raw)
        if len(page) < _PAGE:
            return found
        after = page[-1][0]


class ProjectionService:
    """Runs the projections while this node's writer holds the lease and serves."""

    def __init__(
        self,
        view: ClusterView,
        *,
        store_names: Callable[[], list[str]],
        stores: Callable[[str], StoreReader],
        commit: Commit,
        limits: Limits,
    ) -> None:
        self._view = view
        self._store_names = store_names
        self._stores = stores
        self._commit = commit
        self._wakeup = Wakeup()
        self._limits = limits
        self._running: dict[tuple[str, str], _Running] = {}
        self._leading: asyncio.Task[None] | None = None

    @property
    def running(self) -> list[tuple[str, str]]:
        """(store, name) of each projection running now."""
        return sorted(self._running)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the lease until `stop`: run projections while this node's writer leads."""
        await follow_leader(self._view, stop, start=self._start, end=self._end, serving=True)

    async def _start(self) -> None:
        log.info("beside the writer leader: projections start")
        self._leading = asyncio.create_task(self._lead(), name="projections")

    async def _end(self) -> None:
        log.info("not beside the writer leader any more: projections stop")
        leading, self._leading = self._leading, None
        await cancel_and_wait(leading)
        for running in list(self._running.values()):
            await cancel_and_wait(running.task)
        self._running.clear()

    async def _lead(self) -> None:
        while True:
            ticket = self._wakeup.ticket()
            try:
                await self._reconcile()
            except Exception:
                log.exception("projections could not be listed; trying again")
            await wait_any(ticket, timeout=RECONCILE_EVERY_S)

    def _wanted(self) -> dict[tuple[str, str], StoredProjection]:
        wanted: dict[tuple[str, str], StoredProjection] = {}
        for store in self._store_names():
            try:
                reader = self._stores(store)
            except NotFound:
                continue
            for name, record in stored_projections(reader).items():
                if record.enabled and not record.reason:
                    wanted[(store, name)] = record
        return wanted

    async def _reconcile(self) -> None:
        """Start what should run, stop what should not, restart what changed."""
        wanted = self._wanted()
        for key, running in list(self._running.items()):
            record = wanted.get(key)
            changed = record is None or (record.epoch, record.revision) != (
                running.record.epoch,
                running.record.revision,
            )
            if changed or running.task.done():
                del self._running[key]
                await cancel_and_wait(running.task)
        for key, record in wanted.items():
            if key not in self._running:
                task = asyncio.create_task(self._run_one(*key, record), name=f"projection {key}")
                self._running[key] = _Running(record, task)

    async def _run_one(self, store: str, name: str, record: StoredProjection) -> None:
        runner = ProjectionRunner(
            store,
            name,
            record,
            reader=lambda: self._stores(store),
            commit=self._commit,
            limits=self._limits,
        )
        try:
            await runner.run()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("projection %s/%s stopped: %r; starting again", store, name, e)
            await asyncio.sleep(RESTART_S)
        # Done: the next reconcile starts it again from what is stored (or, faulted, not).
        self._wakeup.notify()
