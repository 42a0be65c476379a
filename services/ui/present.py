"""How the UI shows what the API returns: payloads pretty-printed, sizes and times in words,
pages of a stream newest first, and rates from position samples. Pure functions."""

from __future__ import annotations

import base64
import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from esdb.client import RecordedEvent
from esdb.contracts.api import JSON_CONTENT_TYPE

MAX_SHOWN_BYTES = 64 * 1024
"""A payload longer than this is shown cut, with its size."""
HEX_BYTES = 512
PREVIEW_CHARS = 100
"""How much of a binary payload is shown, as hex."""


@dataclass(frozen=True)
class Payload:
    """A payload as the page shows it: `text`, and what kind it was (`json`, `text`,
    `binary`, `empty`); `note` says whether and how it was cut."""

    text: str
    kind: str
    note: str = ""
    preview: str = ""
    """One short line of it, for a list."""


def show_payload(raw: bytes, content_type: str) -> Payload:
    """Pretty JSON when it parses, else text when it is UTF-8, else hex; cut when long."""
    if not raw:
        return Payload("", "empty")
    note = ""
    if len(raw) > MAX_SHOWN_BYTES:
        note = f"{human_bytes(len(raw))}; the first {human_bytes(MAX_SHOWN_BYTES)} shown"
    if content_type == JSON_CONTENT_TYPE or raw[:1] in (b"{", b"["):
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            pass
        else:
            pretty = json.dumps(value, indent=2, ensure_ascii=False)
            line = json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
            return Payload(_cut(pretty), "json", note, _line(line))
    try:
        decoded = raw.decode()
        return Payload(_cut(decoded), "text", note, _line(decoded))
    except UnicodeDecodeError:
        shown = raw[:HEX_BYTES]
        more = f"; the first {len(shown)} bytes shown" if len(raw) > len(shown) else ""
        return Payload(
            shown.hex(" ", 2), "binary", f"{human_bytes(len(raw))} of {content_type}{more}"
        )


def _line(text: str, width: int = PREVIEW_CHARS) -> str:
    line = " ".join(text[: width * 2].split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_SHOWN_BYTES else text[:MAX_SHOWN_BYTES] + "\n…"


def human_bytes(size: int | None) -> str:
    """`size` bytes in B, KiB, MiB, GiB or TiB."""
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def ago(when: datetime, now: datetime | None = None) -> str:
    """How long before `now` `when` was, roughly: `5 s ago`, `3 min ago`, `2 h ago`, or
    the date."""
    now = now or datetime.now(UTC)
    seconds = (now - when).total_seconds()
    if seconds < 0:
        return "just now"
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h ago"
    return when.strftime("%Y-%m-%d")


_event_json = msgspec.json.Encoder()


def event_json(event: RecordedEvent) -> bytes:
    """An event as the live fan-out publishes it (`EventOut` in JSON): JSON payloads as
    values, others as base64."""
    json_payload = event.content_type == JSON_CONTENT_TYPE

    def payload(raw: bytes) -> object:
        if not raw:
            return None
        if json_payload:
            return msgspec.Raw(raw)
        return base64.b64encode(raw).decode()

    return _event_json.encode(
        {
            "event_id": event.event_id,
            "stream_id": event.stream_id,
            "version": event.version,
            "position": event.position,
            "event_type": event.event_type,
            "data": payload(event.data),
            "metadata": payload(event.metadata),
            "content_type": event.content_type,
            "created": event.created,
        }
    )


@dataclass(frozen=True)
class StreamPage:
    """A page of a stream, newest first, and the versions its neighbours are read backward
    from (`None`: there is no such page)."""

    newer: int | None
    older: int | None
    newest: int | None


def stream_page(
    top: int | None, next_version: int | None, last_version: int, limit: int
) -> StreamPage:
    """The neighbours of the page whose newest version is `top` (None: an empty page), read
    backward with `limit`, whose reply said to go on from `next_version`, of a stream at
    `last_version`."""
    if top is None or top >= last_version:
        return StreamPage(newer=None, older=next_version, newest=None)
    return StreamPage(newer=min(last_version, top + limit), older=next_version, newest=last_version)


@dataclass
class RateSeries:
    """Events appended per second per store, from samples of each store's last position
    taken over time; keeps `keep` samples (at 5 s apart, 120 are ten minutes)."""

    keep: int = 120
    _samples: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)

    def add(self, at: float, positions: Mapping[str, int | None]) -> None:
        """A sample taken at `at` (seconds, monotonic) of each store's last position."""
        self._samples.append((at, {store: p or 0 for store, p in positions.items()}))
        while len(self._samples) > self.keep:
            self._samples.popleft()

    def rates(self, stores: Iterable[str] | None = None) -> list[tuple[float, float]]:
        """(age in seconds of the interval's end, events/s) for each interval between two
        samples, oldest first, summed over `stores` (every store: None). A store that
        appeared or was recreated between two samples counts from 0."""
        wanted = None if stores is None else set(stores)
        out: list[tuple[float, float]] = []
        if not self._samples:
            return out
        newest = self._samples[-1][0]
        previous: tuple[float, dict[str, int]] | None = None
        for at, positions in self._samples:
            if previous is not None and at > previous[0]:
                appended = 0
                for store, position in positions.items():
                    if wanted is not None and store not in wanted:
                        continue
                    before = previous[1].get(store, 0)
                    appended += position - before if position >= before else position
                out.append((newest - at, appended / (at - previous[0])))
            previous = (at, positions)
        return out

    def latest(self, stores: Iterable[str] | None = None) -> float | None:
        """Events/s over the newest interval; None before two samples."""
        rates = self.rates(stores)
        return rates[-1][1] if rates else None


@dataclass
class CounterSeries:
    """A per-second rate from samples of a monotonic counter summed over processes (reads
    answered by the readers), with restarts (a counter going down) counted from 0."""

    keep: int = 120
    _samples: deque[tuple[float, dict[str, float]]] = field(default_factory=deque)

    def add(self, at: float, counters: Mapping[str, float]) -> None:
        """A sample taken at `at` of each process's counter."""
        self._samples.append((at, dict(counters)))
        while len(self._samples) > self.keep:
            self._samples.popleft()

    def rates(self) -> list[tuple[float, float]]:
        """(age in seconds, per second) for each interval between two samples."""
        out: list[tuple[float, float]] = []
        if not self._samples:
            return out
        newest = self._samples[-1][0]
        previous: tuple[float, dict[str, float]] | None = None
        for at, counters in self._samples:
            if previous is not None and at > previous[0]:
                counted = 0.0
                for process, value in counters.items():
                    before = previous[1].get(process, 0.0)
                    counted += value - before if value >= before else value
                out.append((newest - at, counted / (at - previous[0])))
            previous = (at, counters)
        return out


def sparkline(points: list[tuple[float, float]], width: int = 300, height: int = 60) -> str:
    """An SVG polyline's `points` for rates over time (oldest left), scaled to the box."""
    if not points:
        return ""
    span = max(age for age, _ in points) or 1.0
    top = max(rate for _, rate in points) or 1.0
    coords = []
    for age, rate in points:
        x = width * (1 - age / span)
        y = height - height * rate / top
        coords.append(f"{x:.1f},{y:.1f}")
    return " ".join(coords)
