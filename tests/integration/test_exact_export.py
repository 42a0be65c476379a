"""`esdb export` then `esdb import` restore a store exactly, compared through the public API
only: every stream state, truncation of each kind, deletes and recreations, multi-stream
appends, non-JSON payloads, DCB events with tags, snapshots, persistent subscriptions with
checkpoints in the middle, a parked event and `resolve_links`, and two projections (one
partitioned by stream and running, one emitting and stopped in the middle) that go on in the
copy. An import killed halfway and run again ends with the same store.
Bad restore writes are refused naming the field."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from esdb.client import (
    AppendSpec,
    Client,
    DcbCondition,
    DcbEvent,
    DcbQuery,
    DcbQueryItem,
    InvalidRequest,
    NewEvent,
    StreamDeleted,
)
from esdb.contracts.projections import ProjectionPartition
from esdb.contracts.restore import ProjectionRestoreRequest, RestoreEvent, RestoreStream
from tests.integration.test_backup import ESDB, esdb, ok
from tests.stack import Api, Stack, wait_until
from tests.store_view import differences, view_of

DEADLINE_S = 20.0
PER_ORDER = """
fromCategory("order")
  .foreachStream()
  .when({
    $init: function () { return { placed: 0 }; },
    Placed: function (s, e) { s.placed += 1; }
  });
"""
FAULTY = 'fromStream("fault-1").when({ Boom: function () { throw new Error("boom"); } });'
FEED_LOG = """
fromStream("feed-1").when({
  $init: function () { return { n: 0 }; },
  Fed: function (s, e) { s.n += 1; emit("feedlog-1", "Logged", { n: s.n }); }
});
"""


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def _events(client: Client, stream: str, count: int, type: str = "Counted") -> None:
    await client.append(stream, [NewEvent(type, {"n": n}) for n in range(count)])


@pytest.fixture
async def source(stack: Stack) -> AsyncIterator[Client]:
    """A store with every stream state, each kind of truncation, snapshots and two
    persistent subscriptions with checkpoints in the middle and a parked event."""
    name = _name("exsrc")
    async with Client.connect(stack.url, store=name) as client:
        await client.create_store(name, description="orders of the shop", tags=["prod"])
        # Hidden events come first, so the positions of what follows differ in the copy.
        await _events(client, "trunc-1", 10)
        await client.set_stream_metadata("trunc-1", {"truncate_before": 4})
        await _events(client, "order-1", 5, "Placed")
        await client.set_stream_metadata("order-1", {"owner": "ops", "max_age": 3600})
        await _events(client, "capped-1", 12)
        await client.set_stream_metadata("capped-1", {"max_count": 5})
        await _events(client, "gone-1", 3)
        await client.delete_stream("gone-1")
        await _events(client, "back-1", 3)
        await client.delete_stream("back-1")
        await _events(client, "back-1", 2)
        await _events(client, "dead-1", 2)
        await client.tombstone_stream("dead-1")
        await client.append_multi(
            [
                AppendSpec("pair-a", [NewEvent("Paired", {"side": "a"})]),
                AppendSpec("pair-b", [NewEvent("Paired", {"side": "b"})]),
            ]
        )
        await client.append(
            "blob-1",
            [
                NewEvent("Scanned", b"\x00\xff\n binary", content_type="application/x-bin"),
                NewEvent("Noted", b"plain text", content_type="text/plain"),
                NewEvent("Pretty", b'{\n  "spaced": true\n}', metadata=b"null"),
            ],
        )
        await _dcb_events(client)
        await _events(client, "expired-1", 2)
        await client.set_stream_metadata("expired-1", {"max_age": 1})
        await client.record_snapshot("cart", "cart-1", 3, {"items": 2})
        await client.record_snapshot(
            "cart", "cart-1", 7, b"\x01\x02", content_type="application/octet-stream"
        )
        await _events(client, "order-2", 3, "Placed")

        async def expired() -> bool:
            page = await client.read_stream("expired-1")
            return not page.events

        await wait_until(expired, timeout=DEADLINE_S, what="expired-1's events to age out")
        order_1 = (await client.read_stream("order-1")).events
        await client.create_subscription(
            "everything", all=True, start=order_1[0].position, message_timeout_ms=60_000
        )
        await client.create_subscription("orders", category="order", start=order_1[3].position)
        await client.create_subscription("linked", category="order", resolve_links=True)

        async def settled() -> bool:
            info = await client.subscription_info("everything")
            return info.checkpoint == order_1[4].position and info.parked == 1

        wanted = {e.position for e in order_1}
        park = order_1[3].position
        async with client.consume("everything") as sub:
            answered: set[int] = set()
            async with asyncio.timeout(DEADLINE_S):
                while answered != wanted:
                    delivered = await anext(sub)
                    if delivered.position not in wanted:
                        continue  # later events stay in flight: the checkpoint stops below
                    if delivered.position == park:
                        sub.nack(delivered, action="park", reason="cannot handle it")
                    else:
                        sub.ack(delivered)
                    answered.add(delivered.position)
            # Connected until the answers are in: they leave with the consumer's next flush.
            await wait_until(settled, timeout=DEADLINE_S, what="the checkpoint past the parked one")
        await _projections(client)
        yield client


async def _projections(client: Client) -> None:
    """`per-order` running to the store's end; `feed-log` stopped after 3 of 5 `Fed` events,
    having emitted 3 events; `faulty` faulted at its first event."""
    await _events(client, "fault-1", 1, "Boom")
    await client.create_projection("faulty", FAULTY)
    await _events(client, "feed-1", 3, "Fed")
    await client.create_projection("per-order", PER_ORDER)
    await client.create_projection("feed-log", FEED_LOG, emit_enabled=True)

    async def fed_three() -> bool:
        return (await client.projection_state("feed-log")) == {"n": 3}

    await wait_until(fed_three, timeout=DEADLINE_S, what="feed-log to handle 3 events")
    await client.disable_projection("feed-log")
    await _events(client, "feed-1", 2, "Fed")  # after its checkpoint
    last = (await client.store_status(client.store)).last_position

    async def at_the_end() -> bool:
        info = await client.projection_info("per-order")
        return info.position == last and info.partitions == 3

    await wait_until(at_the_end, timeout=DEADLINE_S, what="per-order to reach the store's end")

    async def faulted() -> bool:
        return (await client.projection_info("faulty")).status == "faulted"

    await wait_until(faulted, timeout=DEADLINE_S, what="faulty to fault")


async def _dcb_events(client: Client) -> None:
    """Tagged events in `$dcb`, one appended under a condition, between other streams'."""
    await client.dcb_append(
        [
            DcbEvent("CourseDefined", {"capacity": 2}, tags=["course:c1"]),
            DcbEvent("StudentSubscribed", {"s": 7}, tags=["course:c1", "student:s7"]),
        ]
    )
    await _events(client, "order-3", 1, "Placed")
    taken = DcbQuery([DcbQueryItem(types=["StudentSubscribed"], tags=["student:s8"])])
    await client.dcb_append(
        [DcbEvent("StudentSubscribed", {"s": 8}, tags=["course:c1", "student:s8"])],
        DcbCondition(taken),
    )


async def _export(stack: Stack, store: str, out: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(
        await ok("export", "--store", store, "--out", out, "--json", url=stack.url)
    )
    return summary


async def _import(stack: Stack, store: str, exported: Path, *more: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(
        await ok("import", "--store", store, exported, "--json", *more, url=stack.url)
    )
    return report


async def test_a_store_round_trips_exactly_and_a_rerun_changes_nothing(
    stack: Stack, source: Client, tmp_path: Path
) -> None:
    exported = tmp_path / "store.jsonl.gz"
    summary = await _export(stack, source.store, exported)
    assert (summary["snapshots"], summary["subscriptions"], summary["parked"]) == (2, 3, 1)
    assert summary["projections"] == 3
    target = _name("exdst")
    async with Client.connect(stack.url, store=target) as copy:
        await copy.create_store(target)

        report = await _import(stack, target, exported, "--batch-size", "4")

        assert report["imported"] == summary["events"] and report["skipped"] == 0
        assert (report["subscriptions"], report["parked"], report["parked_dropped"]) == (3, 1, 0)
        assert (report["projections"], report["projections_skipped"]) == (3, 0)
        before = await view_of(source)
        after = await view_of(copy)
        assert differences(before, after) == []
        assert [len(after.by_tag[t]) for t in ("course:c1", "student:s8")] == [3, 1]
        assert after.subscriptions["linked"].resolve_links
        feed_log = after.infos_of_projections["feed-log"]
        assert (feed_log.status, feed_log.events_emitted) == ("stopped", 3)
        faulty = after.infos_of_projections["faulty"]
        boom = next(e for e in after.events if e.stream_id == "fault-1")
        assert (faulty.status, faulty.fault_position) == ("faulted", boom.position)
        assert 0 < feed_log.position < after.events[-1].position  # in the middle
        assert after.partitions["per-order"]["order-1"] == ({"placed": 5}, {"placed": 5})
        assert len(after.events) < before.events[-1].position  # hidden events left no gaps
        assert (await copy.store_config(target)).tags == ["prod"]

        again = await _import(stack, target, exported)
        assert (again["imported"], again["skipped"]) == (0, summary["events"])
        assert again["subscriptions_skipped"] == 3
        assert (again["projections"], again["projections_skipped"]) == (0, 3)
        assert differences(before, await view_of(copy)) == []
        await _projections_go_on(copy)

        # A soft-deleted stream goes on from its version; a tombstoned one stays shut.
        result = await copy.append("gone-1", [NewEvent("Again", {})], expected_version="no_stream")
        assert result.first_version == 3
        with pytest.raises(StreamDeleted):
            await copy.append("dead-1", [NewEvent("Again", {})])


async def _projections_go_on(copy: Client) -> None:
    """The restored projections handle what follows their checkpoints, once each."""
    await copy.enable_projection("feed-log")
    await _events(copy, "feed-1", 1, "Fed")
    await _events(copy, "order-4", 2, "Placed")
    await _events(copy, "order-1", 1, "Placed")

    async def caught_up() -> bool:
        feed = await copy.projection_info("feed-log")
        orders = await copy.projection_info("per-order")
        return feed.events_processed == 6 and orders.partitions == 4 and orders.lag == 0

    await wait_until(caught_up, timeout=DEADLINE_S, what="the restored projections to go on")
    assert await copy.projection_state("feed-log") == {"n": 6}
    logged = (await copy.read_stream("feedlog-1")).events
    assert [e.json()["n"] for e in logged] == [1, 2, 3, 4, 5, 6]  # none emitted twice
    assert len({e.event_id for e in logged}) == 6
    assert (await copy.projection_info("feed-log")).events_emitted == 6
    assert await copy.projection_state("per-order", "order-4") == {"placed": 2}
    assert await copy.projection_state("per-order", "order-1") == {"placed": 6}
    assert (await copy.projection_info("faulty")).status == "faulted"


async def test_an_import_killed_halfway_then_run_again_is_whole(
    stack: Stack, tmp_path: Path
) -> None:
    name = _name("exbig")
    streams = [f"item-{n}" for n in range(20)]
    async with Client.connect(stack.url, store=name) as client:
        await client.create_store(name)
        for round_ in range(40):
            await client.append_multi(
                AppendSpec(s, [NewEvent("Tick", {"round": round_, "k": k}) for k in range(5)])
                for s in streams
            )
        exported = tmp_path / "big.jsonl"
        await _export(stack, name, exported)
        total = 40 * 20 * 5
        target = _name("exres")
        async with Client.connect(stack.url, store=target) as copy:
            await copy.create_store(target)
            environment = {k: v for k, v in os.environ.items() if not k.startswith("ESDB_")}
            process = await asyncio.create_subprocess_exec(
                ESDB,
                *("import", "--store", target, str(exported), "--url", stack.url),
                *("--batch-size", "10", "--in-flight", "2"),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env=environment,
            )

            async def halfway() -> bool:
                return ((await copy.store_status(target)).last_position or 0) >= total // 4

            await wait_until(halfway, timeout=DEADLINE_S * 3, what="a quarter of the import")
            process.send_signal(signal.SIGKILL)
            await process.wait()
            landed = (await copy.store_status(target)).last_position or 0
            assert 0 < landed < total, "the import was not cut halfway"

            report = await _import(stack, target, exported)

            assert (
                report["skipped"] >= landed - 10 and report["imported"] + report["skipped"] == total
            )
            source_view, target_view = await view_of(client), await view_of(copy)
            assert differences(source_view, target_view) == []
            ids = [e.event_id for e in target_view.events]
            assert len(ids) == len(set(ids)) == total


async def test_a_file_from_a_newer_esdb_or_cut_short_is_refused(
    stack: Stack, source: Client, tmp_path: Path
) -> None:
    exported = tmp_path / "store.jsonl"
    await _export(stack, source.store, exported)
    lines = exported.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    assert header["kind"] == "header" and header["format"] == "esdb-export"
    assert header["counts"]["events"] == sum(1 for line in lines if b'"event_id"' in line)
    newer = tmp_path / "newer.jsonl"
    newer.write_bytes(
        json.dumps({**header, "format_version": 99}).encode() + b"\n" + b"".join(lines[1:])
    )
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(lines[:-3]))
    target = _name("exbad")
    async with Client.connect(stack.url, store=target) as copy:
        await copy.create_store(target)
        code, _, err = await _esdb_import(stack, target, newer)
        assert code == 1 and "format version 99" in err
        assert (await copy.store_status(target)).last_position in (0, None)
        code, _, err = await _esdb_import(stack, target, cut)
        assert code == 1 and "incomplete" in err
        assert not (await copy.list_subscriptions())  # nothing past the events was applied


async def _esdb_import(stack: Stack, store: str, path: Path) -> tuple[int, str, str]:
    return await esdb("import", "--store", store, path, url=stack.url)


async def test_bad_restore_writes_are_refused_naming_the_field(stack: Stack) -> None:
    name = _name("exval")
    async with Client.connect(stack.url, store=name) as client:
        await client.create_store(name)
        created = datetime(2026, 1, 1, tzinfo=UTC)
        event = RestoreEvent(event_id=str(uuid.uuid4()), event_type="T", created=created)
        tagged = _with_tags(event, ["course:c1"])
        cases = {
            "streams[0].stream": [RestoreStream(stream="", events=[event])],
            "streams[0].state": [RestoreStream(stream="s", state="gone", version=3)],
            "streams[1].first_version": [
                RestoreStream(stream="s", events=[]),
                RestoreStream(stream="t", expected_version=4, first_version=2, events=[event]),
            ],
            "streams[0].metadata.max_count": [
                RestoreStream(stream="s", metadata={"max_count": "many"}, version=0)
            ],
            "streams[0].events[0].tags": [RestoreStream(stream="s", events=[tagged])],
            "streams[0].events[0].tags[1]": [
                RestoreStream(stream="$dcb", events=[_with_tags(event, ["ok", ""])])
            ],
            "streams[1].stream": [
                RestoreStream(stream="$dcb", events=[tagged]),
                RestoreStream(stream="$other", events=[]),
            ],
        }
        for field, streams in cases.items():
            with pytest.raises(InvalidRequest) as raised:
                await client.restore_streams(streams)
            assert raised.value.details.get("field") == field
        assert (await client.store_status(name)).last_position in (0, None)
        assert [s async for s in client.iter_streams()] == []
        good = ProjectionRestoreRequest(store=name, name="p", query=FEED_LOG, emit_enabled=True)
        one = ProjectionPartition(partition="a", state={"n": 1}, result=None)
        projections = {
            "checkpoint": msgspec.structs.replace(good, checkpoint=1),
            "query": msgspec.structs.replace(good, query="fromAll().when({"),
            "events_emitted": msgspec.structs.replace(good, events_emitted=-1),
            "partitions[1].partition": msgspec.structs.replace(good, partitions=[one, one]),
            "name": msgspec.structs.replace(good, name=""),
        }
        for field, request in projections.items():
            with pytest.raises(InvalidRequest) as raised:
                await client.restore_projection(request)
            assert raised.value.details.get("field") == field
        assert await client.list_projections() == []


def _with_tags(event: RestoreEvent, tags: list[str]) -> RestoreEvent:
    return RestoreEvent(
        event_id=event.event_id, event_type=event.event_type, created=event.created, tags=tags
    )


async def test_streams_the_target_already_has_stop_the_import_unless_renumbered(
    stack: Stack, tmp_path: Path
) -> None:
    name, target = _name("exown"), _name("exhas")
    async with (
        Client.connect(stack.url, store=name) as client,
        Client.connect(stack.url, store=target) as copy,
    ):
        await client.create_store(name)
        await copy.create_store(target)
        await _events(client, "order-1", 3)
        await _dcb_events(client)
        await _events(copy, "order-1", 2)
        await copy.dcb_append([DcbEvent("CourseDefined", {"capacity": 9}, tags=["course:c1"])])
        exported = tmp_path / "has.jsonl"
        await _export(stack, name, exported)

        code, _, err = await _esdb_import(stack, target, exported)

        assert code == 1 and "wrong_expected_version" in err and "--renumber" in err
        first_event = 1 + next(
            n for n, line in enumerate(exported.read_text().splitlines()) if "event_id" in line
        )
        assert f"import stopped at line {first_event};" in err
        assert (await copy.stream_info("order-1")).version == 1
        await _import(stack, target, exported, "--renumber")
        assert (await copy.stream_info("order-1")).version == 4
        # DCB events are appended after the target's own, with their ids, order and tags.
        course = DcbQuery([DcbQueryItem(tags=["course:c1"])])
        mine, theirs = (await copy.dcb_read(course)).events, (await client.dcb_read(course)).events
        assert [(e.event_id, e.tags) for e in mine[1:]] == [(e.event_id, e.tags) for e in theirs]
        assert [e.version for e in mine] == [0, 1, 2, 3]
        again = await _import(stack, target, exported, "--renumber")
        assert again["imported"] == 0
        assert len((await copy.dcb_read(course)).events) == 4


async def test_a_json_restore_writes_and_a_naive_time_is_refused_naming_the_field(
    stack: Stack, api: Api
) -> None:
    name = _name("exjsn")
    await api.ok("store_create", {"store": name}, store="_sys")
    event = {"event_id": str(uuid.uuid4()), "event_type": "T", "data": "eyJhIjoxfQ=="}
    naive: dict[str, Any] = {
        "store": name,
        "streams": [
            {
                "stream": "s",
                "first_version": 7,
                "events": [{**event, "created": "2026-01-01T00:00:00"}],
            }
        ],
    }

    error = await api.error("store_restore", naive, store="_sys")

    assert (error["code"], error["details"]["field"]) == (
        "invalid_request",
        "streams[0].events[0].created",
    )
    aware = {
        **naive,
        "streams": [
            {**naive["streams"][0], "events": [{**event, "created": "2026-01-01T00:00:00.000001Z"}]}
        ],
    }
    result = await api.ok("store_restore", aware, store="_sys")
    assert result["results"][0]["first_version"] == 7
    page = await api.ok("read_stream", {"stream": "s"}, store=name)
    assert [(e["version"], e["data"], e["created"]) for e in page["events"]] == [
        (7, {"a": 1}, "2026-01-01T00:00:00.000001Z")
    ]
