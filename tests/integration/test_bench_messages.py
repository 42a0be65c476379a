"""The bench counts each nats-server's messages (its `varz`, asked as the stack's system
account) around a phase, on the session's real stack."""

from __future__ import annotations

from esdb.benchmarks.figures import ResourceSample
from esdb.benchmarks.stack import BenchStack
from esdb.client import Client, NewEvent
from tests.stack import Stack


def server_messages(sample: ResourceSample) -> int:
    [server] = [p for p in sample.processes if p.process.startswith("nats-server")]
    assert server.messages is not None, "the server's varz was not read"
    return server.messages


async def test_a_sample_counts_the_messages_each_server_handled(stack: Stack) -> None:
    bench_stack = BenchStack(url=stack.url, data_dir=stack.data_dir)
    before = await bench_stack.sample("start", 0, 0)
    appends = 20
    async with Client.connect(stack.url) as client:
        for n in range(appends):
            await client.append(f"bench-messages-{n}", [NewEvent(type="Counted", data={})])
    after = await bench_stack.sample("appends", appends, appends)
    # Each append is at least a request in, out to the leader, a reply in and out again.
    assert server_messages(after) - server_messages(before) >= 4 * appends
    assert all(p.messages is None for p in after.processes if not p.process.startswith("nats"))
