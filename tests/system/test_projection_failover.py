"""Projections exactly once through faults, under concurrent appends checked by the history
checker: a kill -9 of the leader's projection service, and a writer leader failover in a
three-node cluster. Afterwards the projection's state counts every appended event once, and its
derived stream holds exactly one emitted event per source event, none twice, none missing."""

from __future__ import annotations

from pathlib import Path

from tests.stack import Api, Stack, connect_api, read_all_events, start_stack, wait_until
from tests.system.cluster import (
    crash,
    freeze_leader_until_another_leads,
    load_with_fault,
    verify_replicas,
    wait_converged,
)
from tests.system.history import RETRYABLE, History, verify

DERIVED = "projected-loads"
QUERY = f"""
fromAll().when({{
  $init: function () {{ return {{ count: 0 }}; }},
  Loaded: function (s, e) {{
    s.count += 1;
    emit('{DERIVED}', 'Counted', {{ id: e.data.id, position: e.position }});
  }}
}})
"""


async def _create(api: Api) -> None:
    await api.ok("projection_create", {"name": "loads", "query": QUERY, "emit_enabled": True})


async def _check_exactly_once(api: Api, history: History) -> None:
    """The projection caught up, counted each acknowledged event once and emitted one event
    per source event."""
    loaded = sum(len(a.event_ids) for a in history.acked)

    async def caught_up() -> bool:
        info = await api.call("projection_info", {"name": "loads"})
        if info.get("error", {}).get("code") in RETRYABLE:
            return False  # its service is restarting, or the leader moving
        assert info["status"] == "running", info
        return bool(info["lag"] == 0 and info["events_processed"] == loaded)

    await wait_until(caught_up, timeout=120, what="the projection to process every event")
    state = await api.ok("projection_state", {"name": "loads"})
    assert state["state"] == {"count": loaded}
    events = await read_all_events(api)
    emitted = [e for e in events if e["stream_id"] == DERIVED]
    sources = {e["event_id"]: e for e in events if e["event_type"] == "Loaded"}
    emitted_ids = [e["data"]["id"] for e in emitted]
    assert len(emitted_ids) == len(set(emitted_ids)), "an event was emitted twice"
    acked_ids = {i for a in history.acked for i in a.event_ids}
    assert set(emitted_ids) == acked_ids == set(sources), "an emitted event is missing"
    for event in emitted:  # each emitted for the source event at the position it names
        assert sources[event["data"]["id"]]["position"] == event["data"]["position"]
        assert event["position"] > event["data"]["position"]
    info = await api.ok("projection_info", {"name": "loads"})
    assert info["events_emitted"] == loaded


async def test_kill_the_projection_service_during_appends(fresh_stack: Stack) -> None:
    api = await connect_api(fresh_stack.url)
    await _create(api)

    async def fault() -> None:
        await crash(fresh_stack, "projection", 1)

    history = await load_with_fault(api, fault, workers=12, appends=30)
    await verify(api, history)
    await _check_exactly_once(api, history)
    assert "projection-node1 (pid" in fresh_stack.log_tail(400)
    await api.nc.close()


async def test_writer_leader_failover_in_a_three_node_cluster(tmp_path: Path) -> None:
    cluster = start_stack(tmp_path / "cluster", nodes=3)
    try:
        api = await connect_api(cluster.url)
        await _create(api)

        async def fault() -> None:
            await freeze_leader_until_another_leads(cluster, api)

        history = await load_with_fault(api, fault, workers=8, appends=30)
        await _check_exactly_once(api, history)
        await wait_converged(api)
        verify_replicas(cluster, history)
        await verify(api, history)
        await api.nc.close()
    finally:
        cluster.stop()
