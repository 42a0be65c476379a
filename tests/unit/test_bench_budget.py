"""The bench's per-process budget and messages-per-event tables, from resource samples."""

from __future__ import annotations

from esdb.benchmarks.figures import (
    CLIENT_ROW,
    BenchConfig,
    BenchReport,
    ProcessUsage,
    ResourceSample,
)
from esdb.benchmarks.report import format_report


def usage(name: str, cpu_s: float, messages: int | None = None, pid: int = 1) -> ProcessUsage:
    return ProcessUsage(
        process=name, pid=pid, rss_kib=0, anon_kib=0, cpu_s=cpu_s, messages=messages
    )


def sample(label: str, events: int, *processes: ProcessUsage) -> ResourceSample:
    return ResourceSample(
        label=label, phase_events=events, events_stored=events, processes=list(processes)
    )


def report() -> BenchReport:
    config = BenchConfig(
        events=1000,
        clients=1,
        durability="fsync",
        stream_length=100,
        read_page=1000,
        event_bytes=160,
        scenario="append",
        url="nats://x",
        own_stack=True,
        nats_server_version="2",
        nodes=3,
        placement={"esdb writer leader": "node2"},
    )
    # CPU seconds and messages after 10,000 events: 0.4 s of CPU is 40 µs per event.
    after = {
        CLIENT_ROW: (0.4, None),
        "writer-node1": (0.1, None),
        "writer-node2": (0.5, None),
        "emitter-node2": (0.1, None),
        "gateway": (0.0, None),
        "nats-server-node1": (0.3, 30_000),
        "nats-server-node2": (0.3, 25_000),
    }
    start = sample(
        "start", 0, *(usage(name, 0.0, None if m is None else 0) for name, (_, m) in after.items())
    )
    appends = sample(
        "r1 esdb appends", 10_000, *(usage(name, cpu, m) for name, (cpu, m) in after.items())
    )
    return BenchReport(config=config, resources=[start, appends])


def test_each_process_is_measured_against_its_budget() -> None:
    text = format_report(report())
    budget = text[text.index("cpu per event against the budget") :].splitlines()
    rows = {line.split(" (")[0]: line.split() for line in budget[2:]}
    assert rows["bench client"][-3:] == ["40", "44", "within"]
    assert rows["writer leader"][-3:] == ["50", "40", "OVER"]  # node2 leads, not node1
    assert rows["each follower writer"][-3:] == ["10", "15", "within"]
    assert rows["leader emitter"][-3:] == ["10", "12", "within"]
    assert rows["gateway"][-3:] == ["0", "0", "within"]
    assert rows["nats-servers, summed"][-3:] == ["60", "70", "within"]


def test_messages_per_event_are_shown_per_server_and_summed() -> None:
    text = format_report(report())
    table = text[text.index("nats messages per event") :].splitlines()
    rows = {line.rsplit(None, 1)[0].strip(): line.split()[-1] for line in table[2:5]}
    assert rows == {"nats-server-node1": "3.00", "nats-server-node2": "2.50", "all servers": "5.50"}
