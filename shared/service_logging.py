"""Service logs: one line per record, as text or JSON, with routine repeats rate-limited and
every warning and error kept."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec

REPEAT_WINDOW_S = 60.0
REPEAT_BURST = 10
"""A record below WARNING logged more than REPEAT_BURST times from one source line within
REPEAT_WINDOW_S is routine chatter (reconnects, lease and retry notices): the rest of the
window is counted, not printed, and the next line printed from that place says how many."""

_json = msgspec.json.Encoder()


class RepeatFilter(logging.Filter):
    """Passes every WARNING and above; of the records below it, passes the first `burst` per
    source line per `window` seconds and counts the rest into the first one passed in the next
    window (`record.suppressed`)."""

    def __init__(
        self,
        *,
        burst: int = REPEAT_BURST,
        window: float = REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._burst = burst
        self._window = window
        self._clock = clock
        # source line -> [window start, passed in the window, suppressed in the window]
        self._seen: dict[tuple[str, int], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        key = (record.pathname, record.lineno)
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None or now - seen[0] >= self._window:
            suppressed = seen[2] if seen is not None else 0
            self._seen[key] = [now, 1, 0]
        elif seen[1] < self._burst:
            seen[1] += 1
            suppressed = 0
        else:
            seen[2] += 1
            return False
        if suppressed:
            record.suppressed = int(suppressed)
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL service logger: message`, and how many repeats were suppressed before."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        suppressed = getattr(record, "suppressed", 0)
        if suppressed:
            line += f" [{suppressed} similar suppressed]"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `ts` (UTC, ISO 8601), `level`, `service`, `node`, `logger`,
    `message`, and when present `exception` and `suppressed`."""

    def __init__(self, service: str, node: str) -> None:
        super().__init__()
        self._service = service
        self._node = node

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self._service,
            "node": self._node,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        suppressed = getattr(record, "suppressed", 0)
        if suppressed:
            line["suppressed"] = suppressed
        return _json.encode(line).decode()


def configure_logging(
    level: str,
    service: str,
    *,
    log_format: str = "text",
    node: str = "",
    stream: TextIO | None = None,
) -> logging.Handler:
    """One log format for every service, to stderr (or `stream`); returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter = JsonFormatter(service, node) if log_format == "json" else TextFormatter(service)
    handler.setFormatter(formatter)
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("nats").setLevel(logging.WARNING)
    return handler
