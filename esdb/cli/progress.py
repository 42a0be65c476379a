"""A one-line progress bar on stderr for long commands, drawn only when stderr is a terminal."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

BAR_WIDTH = 24
_REDRAW_S = 0.1
_CLEAR_TO_END = "\x1b[K"


def quantity(value: float, unit: str) -> str:
    """`1,234` for counts, `1.2 MiB` for bytes."""
    if unit != "bytes":
        return f"{value:,.0f}"
    for prefix in ("", "Ki", "Mi", "Gi"):
        if abs(value) < 1024 or prefix == "Gi":
            return f"{value:.0f} B" if not prefix else f"{value:.1f} {prefix}B"
        value /= 1024
    raise AssertionError("unreachable")


def clock_text(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` past an hour."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render(
    label: str,
    *,
    count: int,
    elapsed: float,
    unit: str = "events",
    total: int | None = None,
    done: int | None = None,
) -> str:
    """One line: label, a bar and percentage when `total` is known, the count, the rate and
    the time left (or taken). `done` is how far towards `total` the work is when that is not
    `count` itself (e.g. the position an export reached)."""
    rate = count / elapsed if elapsed > 0 else 0.0
    reached = count if done is None else done
    parts = [label]
    if total:
        fraction = min(max(reached / total, 0.0), 1.0)
        filled = int(fraction * BAR_WIDTH)
        parts.append(f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction * 100:3.0f}%")
    if total and done is None:
        parts.append(_with_unit(f"{quantity(count, unit)}/{quantity(total, unit)}", unit))
    else:
        parts.append(_with_unit(quantity(count, unit), unit))
    parts.append(_with_unit(quantity(rate, unit), unit) + "/s")
    if total and 0 < reached < total and rate > 0:
        # Estimate from the share of the total done so far, in whatever unit `done` counts.
        left = elapsed * (total - reached) / reached
        parts.append(f"ETA {clock_text(left)}")
    else:
        parts.append(clock_text(elapsed))
    return "  ".join(parts)


def _with_unit(text: str, unit: str) -> str:
    return text if unit == "bytes" else f"{text} {unit}"


class Progress:
    """Counts work done and redraws a bar on stderr at most every 0.1 s, only on a terminal
    (so logs and pipes stay clean); `with Progress(...) as bar: bar.advance(n)`."""

    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        unit: str = "events",
        stream: TextIO | None = None,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self._command = label
        self.total = total
        self.unit = unit
        self.count = 0
        self.done: int | None = None
        self._stream = stream or sys.stderr
        self.enabled = self._stream.isatty() if enabled is None else enabled
        self._clock = clock
        self._started = clock()
        self._drawn_at: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was made."""
        return self._clock() - self._started

    @property
    def rate(self) -> float:
        """Units per second so far."""
        elapsed = self.elapsed
        return self.count / elapsed if elapsed > 0 else 0.0

    def advance(self, amount: int = 1, *, done: int | None = None) -> None:
        """Add `amount` to the count; `done` says how far towards the total that got, when
        the total is not counted in the same unit."""
        self.count += amount
        if done is not None:
            self.done = done
        self._draw(force=False)

    def phase(self, name: str, total: int | None) -> None:
        """Begin a phase of the command (`<label> <name>`) with its own total, on a new line
        once the previous phase has been drawn."""
        self.close()
        self.label = f"{self._command} {name}"
        self.total, self.count, self.done = total, 0, None
        self._started = self._clock()
        self._drawn_at = None

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled and self._drawn_at is not None:
            self._draw(force=True)
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self, *, force: bool) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if not force and self._drawn_at is not None and now - self._drawn_at < _REDRAW_S:
            return
        self._drawn_at = now
        line = render(
            self.label,
            count=self.count,
            elapsed=now - self._started,
            unit=self.unit,
            total=self.total,
            done=self.done,
        )
        width = shutil.get_terminal_size().columns - 1
        self._stream.write("\r" + line[:width] + _CLEAR_TO_END)
        self._stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
