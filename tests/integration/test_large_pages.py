"""Pages whose events add up to more than a NATS message holds (8 MB in `esdb up`): the reader
cuts the page where the reply is full and points the cursor after it, so reads page on instead
of timing out on a reply the server refuses to carry."""

from __future__ import annotations

import base64
import os
import uuid

from esdb.client import Client, NewEvent
from tests.stack import Api, Stack

EVENT_BYTES = 900_000  # under the 1 MiB event limit; twelve are about 11 MB, 14 MB as base64
EVENTS = 12


async def test_a_stream_of_large_events_reads_in_pages_that_fit(stack: Stack, api: Api) -> None:
    stream = f"large-{uuid.uuid4().hex[:8]}"
    payloads = [os.urandom(EVENT_BYTES) for _ in range(EVENTS)]
    async with Client.connect(stack.url, timeout=30) as client:
        for payload in payloads:
            await client.append(
                stream, [NewEvent("Blob", payload, content_type="application/octet-stream")]
            )
        # msgpack (the client's codec): every event once, in order, over several pages.
        page = await client.read_stream(stream, limit=100)
        assert 1 <= len(page.events) < EVENTS and page.next == len(page.events)
        read = [e.data async for e in client.iter_stream(stream, page_size=100)]
        assert read == payloads
        backward = [
            e.data async for e in client.iter_stream(stream, direction="backward", from_="end")
        ]
        assert backward == payloads[::-1]
        first = (await client.read_stream(stream, limit=1)).events[0].position
        everything = [
            e.data
            async for e in client.iter_all(from_position=first, page_size=100)
            if e.stream_id == stream
        ]
        assert everything == payloads

    # JSON, where binary payloads grow by a third as base64.
    seen: list[bytes] = []
    cursor: int | None = 0
    pages = 0
    while cursor is not None:
        reply = await api.ok("read_stream", {"stream": stream, "from": cursor, "limit": 100})
        seen.extend(base64.b64decode(e["data"]) for e in reply["events"])
        cursor, pages = reply["next"], pages + 1
    assert seen == payloads and pages >= 2
    reply = await api.ok("read_all", {"from_position": first, "limit": 100})
    assert 1 <= len(reply["events"]) < EVENTS
    assert reply["next_position"] == reply["events"][-1]["position"] + 1


async def test_streams_with_large_metadata_list_in_pages_that_fit(api: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    names = [f"meta{tag}-{n:03}" for n in range(150)]
    note = "x" * 60_000  # under the 64 KiB metadata limit; 150 of them are about 9 MB
    for name in names:
        await api.ok("set_stream_metadata", {"stream": name, "metadata": {"note": note}})
    pages: list[list[dict[str, object]]] = []
    after: str | None = f"meta{tag}"
    while after is not None and after.startswith(f"meta{tag}"):
        reply = await api.ok("list_streams", {"after": after, "limit": 1000})
        pages.append([s for s in reply["streams"] if str(s["stream"]).startswith(f"meta{tag}")])
        after = reply["next"]
    assert 1 <= len(pages[0]) < len(names)  # cut where the reply was full
    listed = [s for page in pages for s in page]
    assert [s["stream"] for s in listed] == names
    assert all(s["metadata"] == {"note": note} for s in listed)
