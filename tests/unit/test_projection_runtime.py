"""The projection runtime alone (V8, no NATS): KurrentDB's query language over batches, the
events a query selects, and what stops a query: a throw, an endless loop, a memory bomb."""

from __future__ import annotations

import asyncio
import threading

import msgspec
import pytest

from esdb.services.projection.batches import batch_json, emitted_appends, selects
from esdb.services.projection.runner import run_to_end
from esdb.services.projection.runtime import Isolate, ProjectionFault, QueryError
from esdb.shared.storage.records import EventRecord


def event(position: int, stream: str, kind: str, data: object = None) -> EventRecord:
    return EventRecord(
        event_id=position.to_bytes(16, "big"),
        stream=stream,
        version=position - 1,
        position=position,
        type=kind,
        data=b"" if data is None else msgspec.json.encode(data),
        metadata=b"",
        content_type="application/json",
        created_us=0,
    )


def compiled(query: str, *, emit: bool = False, **limits: float) -> Isolate:
    return Isolate.compile(query, emit_enabled=emit, **limits)  # type: ignore[arg-type]


def test_when_with_init_any_and_named_handlers() -> None:
    isolate = compiled(
        "fromAll().when({$init: () => ({n: 0, a: 0}),"
        " $any: (s) => { s.n++; }, A: (s) => { s.a++; }})"
    )
    out = isolate.process(batch_json([event(1, "x-1", "A"), event(2, "x-1", "B")]))
    assert out.processed == 2
    assert out.parts == [("", '{"n":1,"a":1}', '{"n":1,"a":1}')]


def test_foreach_stream_partition_by_and_result_shaping() -> None:
    per_stream = compiled(
        "fromAll().foreachStream().when({$init: () => 0, $any: (s) => s + 1})"
        ".transformBy(s => s * 10).filterBy(s => s > 10)"
    )
    out = per_stream.process(
        batch_json([event(1, "a", "E"), event(2, "b", "E"), event(3, "a", "E")])
    )
    assert sorted(out.parts) == [("a", "2", "20"), ("b", "1", "null")]
    by_field = compiled(
        "fromAll().partitionBy(e => e.data.k).when({$any: (s, e) => { s.v = e.data.v; }})"
    )
    out = by_field.process(
        batch_json([event(1, "s", "E", {"k": "x", "v": 1}), event(2, "s", "E", {"v": 2})])
    )
    assert out.parts == [("x", '{"v":1}', '{"v":1}')]  # no key: the event is skipped
    assert out.processed == 1


def test_bi_state_shares_one_state_across_partitions() -> None:
    isolate = compiled(
        "fromAll().foreachStream().when({$init: () => 0, $initShared: () => 0,"
        " $any: (s, e) => [s[0] + 1, s[1] + 1]})"
    )
    out = isolate.process(batch_json([event(1, "a", "E"), event(2, "b", "E")]))
    assert sorted(out.parts) == [("a", "1", "1"), ("b", "1", "1")]
    assert out.shared == "2"


def test_sources_and_types_select_events() -> None:
    category = compiled("fromCategory('order').when({Placed: () => {}})").shape
    assert selects(category, event(1, "order-1", "Placed"))
    assert not selects(category, event(1, "order-1", "Other"))
    assert not selects(category, event(1, "cart-1", "Placed"))
    streams = compiled("fromStreams(['a', 'b']).when({$any: () => {}})").shape
    assert selects(streams, event(1, "b", "X")) and not selects(streams, event(1, "c", "X"))
    assert not selects(streams, event(1, "a", "$>"))  # `$` types only by name


def test_emit_and_link_need_emit_enabled_and_get_ids() -> None:
    query = (
        "fromAll().when({$any: (s, e) => {"
        " emit('out', 'Seen', {p: e.position}); linkTo('l', e); }})"
    )
    with pytest.raises(ProjectionFault, match="emit_enabled"):
        compiled(query).process(batch_json([event(1, "a", "E")]))
    sources = [event(7, "a", "E")]
    out = compiled(query, emit=True).process(batch_json(sources))
    appends = emitted_appends("p", 0, out.emits, sources)
    assert [(a.stream, [e.type for e in a.events]) for a in appends] == [
        ("out", ["Seen"]),
        ("l", ["$>"]),
    ]
    assert appends[0].events[0].data == b'{"p":7}'
    assert appends[1].events[0].data == b"6@a"
    assert appends[0].events[0].event_id != appends[1].events[0].event_id


def test_compile_errors_name_the_line() -> None:
    with pytest.raises(QueryError) as raised:
        compiled("fromAll()\n.when({\n$any: (s) => { s + })")
    assert raised.value.line == 3 and "SyntaxError" in raised.value.message
    with pytest.raises(QueryError, match="source"):
        compiled("var nothing = 1;")


def test_a_throw_names_the_event_it_was_at() -> None:
    isolate = compiled(
        "fromAll().when({$any: (s, e) => { if (e.position === 3) throw new Error('no'); }})"
    )
    with pytest.raises(ProjectionFault, match="no") as raised:
        isolate.process(batch_json([event(p, "a", "E") for p in (1, 2, 3, 4)]))
    assert raised.value.index == 2


def test_an_endless_loop_and_a_memory_bomb_are_stopped() -> None:
    loop = compiled("fromAll().when({$any: () => { while (true) {} }})", batch_timeout_s=0.2)
    with pytest.raises(ProjectionFault, match="time limit"):
        loop.process(batch_json([event(1, "a", "E")]))
    bomb = compiled(
        "fromAll().when({$any: () => {"
        " var a = []; while (true) a.push(new Array(1e5).fill(1)); }})",
        memory_bytes=32 << 20,
        batch_timeout_s=30,
    )
    with pytest.raises(ProjectionFault, match="memory limit"):
        bomb.process(batch_json([event(1, "a", "E")]))


async def test_a_cancelled_batch_ends_before_its_isolate_is_closed() -> None:
    slow = "fromAll().when({$any: () => { var t = Date.now(); while (Date.now() - t < 300) {} }})"
    isolate = await asyncio.to_thread(Isolate.compile, slow, emit_enabled=False)
    done = threading.Event()

    def process() -> None:
        isolate.process(batch_json([event(1, "a", "E")]))
        done.set()

    task = asyncio.create_task(run_to_end(process))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.is_set()  # the call ended first: closing now cannot strand its thread
    isolate.close()
