"""An exact import into a three-node cluster whose leader's writer is killed a third of the way
through: the history checker finds every acknowledged restore exactly once where it was
acknowledged, on every node, and the copy equals its source through the public API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from esdb.cli.import_command import ExportReader
from esdb.cli.progress import Progress
from esdb.cli.restore_import import Restorer, plan_requests
from esdb.client import AppendResult, AppendSpec, Client, NewEvent
from esdb.contracts.restore import NO_FENCE, RestoreSnapshot, RestoreStream
from tests.integration.test_backup import ok
from tests.stack import Stack, connect_api, start_stack
from tests.store_view import differences, view_of
from tests.system.cluster import kill, leader_index, verify_replicas, wait_converged, wait_restarted
from tests.system.history import Acked, History, verify

STREAMS = 24
ROUNDS = 25


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Stack]:
    """A fresh three-node stack."""
    running = start_stack(tmp_path / "cluster", nodes=3)
    yield running
    running.stop()


class _Recorded:
    """A client whose acknowledged restores go into the history, as appends' do."""

    def __init__(self, client: Client, history: History, third: int) -> None:
        self._client = client
        self._history = history
        self._third = third
        self.store = client.store
        self.a_third_in = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def restore_streams(
        self,
        streams: Iterable[RestoreStream],
        *,
        snapshots: Iterable[RestoreSnapshot] = (),
        expected_position: int = NO_FENCE,
    ) -> list[AppendResult]:
        runs = list(streams)
        results = await self._client.restore_streams(
            runs, snapshots=snapshots, expected_position=expected_position
        )
        for run, result in zip(runs, results, strict=True):
            if run.events:
                ids = [e.event_id for e in run.events]
                self._history.acked.append(
                    Acked(run.stream, ids, result.first_version, result.first_position)
                )
        if sum(len(a.event_ids) for a in self._history.acked) >= self._third:
            self.a_third_in.set()
        return results


async def test_an_import_through_a_leader_failover_is_exact_on_every_node(
    cluster: Stack, tmp_path: Path
) -> None:
    api = await connect_api(cluster.url)
    async with (
        Client.connect(cluster.url, store="src", timeout=10) as source,
        Client.connect(cluster.url, store="default", timeout=10) as target,
    ):
        await source.create_store("src")
        for round_ in range(ROUNDS):
            await source.append_multi(
                AppendSpec(
                    f"item-{s}", [NewEvent("Tick", {"round": round_, "k": k}) for k in range(4)]
                )
                for s in range(STREAMS)
            )
        await source.set_stream_metadata("item-0", {"owner": "ops"})
        exported = tmp_path / "src.jsonl"
        await ok("export", "--store", "src", "--out", exported, url=cluster.url)
        total = ROUNDS * STREAMS * 4

        history = History()
        recorded = _Recorded(target, history, total // 3)
        old = await leader_index(api)

        imported = asyncio.Event()

        async def fault() -> None:
            await recorded.a_third_in.wait()
            pid = kill(cluster, "writer", old)
            assert not imported.is_set(), "the import ended before the leader's writer died"
            await wait_restarted(cluster, "writer", old, pid)

        async def restore() -> Restorer:
            with open(exported, "rb") as lines, Progress("import", enabled=False) as bar:
                reader = ExportReader(enumerate(lines, start=1))
                restorer = Restorer(recorded, start_position=0, in_flight=4)  # type: ignore[arg-type]
                await restorer.send_events(plan_requests(reader.events(), max_events=20), bar)
                reader.check_whole()
                await restorer.settle_streams([line for _, line in reader.streams])
            imported.set()
            return restorer

        restorer, _ = await asyncio.gather(restore(), fault())

        assert restorer.report.imported + restorer.report.skipped == total
        await wait_converged(api)
        events = await verify(api, history)
        assert len(events) == total
        verify_replicas(cluster, history)
        assert differences(await view_of(source), await view_of(target)) == []
    await api.nc.close()
