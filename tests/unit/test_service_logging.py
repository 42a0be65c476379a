"""Service logs: text or JSON lines, routine repeats rate-limited, warnings and errors kept."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from esdb.shared.service_logging import RepeatFilter, configure_logging


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(
    level: int = logging.INFO, line: int = 10, msg: str = "nats reconnected"
) -> logging.LogRecord:
    return logging.LogRecord("esdb.test", level, "/src/module.py", line, msg, (), None)


def test_a_repeated_routine_line_passes_a_burst_then_counts_the_rest() -> None:
    clock = Clock()
    repeats = RepeatFilter(burst=3, window=60.0, clock=clock)

    passed = [repeats.filter(record()) for _ in range(10)]

    assert passed == [True] * 3 + [False] * 7
    clock.now = 60.0
    first = record()
    assert repeats.filter(first)
    assert getattr(first, "suppressed", 0) == 7  # says what the last window hid


def test_warnings_and_errors_are_never_suppressed() -> None:
    repeats = RepeatFilter(burst=1, window=60.0, clock=Clock())
    for level in (logging.WARNING, logging.ERROR, logging.CRITICAL):
        assert all(repeats.filter(record(level)) for _ in range(100))


def test_each_source_line_has_its_own_allowance() -> None:
    repeats = RepeatFilter(burst=1, window=60.0, clock=Clock())
    assert repeats.filter(record(line=1))
    assert not repeats.filter(record(line=1))
    assert repeats.filter(record(line=2))


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_level_service_node_and_the_exception(root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "writer", log_format="json", node="node2", stream=stream)
    log = logging.getLogger("esdb.services.writer")

    log.debug("not shown at INFO")
    log.info("acquired the lease at %d", 7)
    try:
        raise ValueError("bad entry")
    except ValueError:
        log.exception("apply failed")

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    # Only this logger's: a client's background thread left by another test may log too.
    lines = [line for line in lines if line["logger"] == "esdb.services.writer"]
    assert [line["level"] for line in lines] == ["INFO", "ERROR"]
    first = lines[0]
    assert first["message"] == "acquired the lease at 7"
    assert (first["service"], first["node"], first["logger"]) == (
        "writer",
        "node2",
        "esdb.services.writer",
    )
    assert first["ts"].endswith("+00:00")
    assert "ValueError: bad entry" in lines[1]["exception"]


def test_text_lines_say_how_many_repeats_were_suppressed(root_logging: None) -> None:
    stream = io.StringIO()
    handler = configure_logging("INFO", "gateway", stream=stream)
    clock = Clock()
    handler.filters[:] = [RepeatFilter(burst=1, window=10.0, clock=clock)]
    log = logging.getLogger("esdb.services.gateway")

    for n in range(6):
        clock.now = 10.0 if n == 5 else 0.0  # the sixth comes in the next window
        log.info("writer lease now %s", "node1")

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert " INFO gateway esdb.services.gateway: writer lease now node1" in lines[0]
    assert lines[1].endswith("writer lease now node1 [4 similar suppressed]")
