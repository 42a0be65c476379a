"""One projection's V8 isolate (mini-racer): its own heap with a hard limit, a time limit per
batch, and nothing but the prelude and the query in it (no files, network or other
projections)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import cast

import msgspec
from py_mini_racer import (
    JSEvalException,
    JSFunction,
    JSOOMException,
    JSTimeoutException,
    MiniRacer,
)

from esdb.services.projection.prelude import PRELUDE

DEFAULT_MEMORY_BYTES = 64 << 20
DEFAULT_BATCH_TIMEOUT_S = 2.0
_LINE = re.compile(r"<anonymous>:(\d+)")
_json = msgspec.json.Encoder()


class QueryError(Exception):
    """The query does not compile or does not define a projection."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class ProjectionFault(Exception):
    """The query threw or went over a limit while handling a batch; `index` is the batch
    event it was at (-1: unknown)."""

    def __init__(self, reason: str, index: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.index = index


class Shape(msgspec.Struct, frozen=True):
    """What the query reads: its source, the event types it handles, and how it partitions."""

    kind: str
    names: list[str]
    types: list[str]
    any: bool
    partitioned: bool
    biState: bool


class Emitted(msgspec.Struct, frozen=True):
    """An `emit` or `linkTo` of batch event `i`: stream, type, data (JSON text, or the link's
    `<version>@<stream>`), metadata (any JSON value), and whether it is a link."""

    s: str
    t: str
    d: str
    m: msgspec.Raw | None
    l: bool  # noqa: E741 - the prelude's name
    i: int


class BatchOutcome(msgspec.Struct, frozen=True):
    """What a batch did: events handled, emits, and (partition, state, result) per touched
    partition (JSON text), and the shared state of a bi-state query (JSON text or None)."""

    processed: int
    emits: list[Emitted]
    parts: list[tuple[str, str, str]]
    shared: str | None


_shape = msgspec.json.Decoder(Shape)
_outcome = msgspec.json.Decoder(BatchOutcome)


def _message(error: Exception) -> tuple[str, int | None]:
    text = str(error).strip()
    match = _LINE.search(text)
    line = int(match.group(1)) if match else None
    lines = [part for part in text.splitlines() if part.strip()]
    # mini-racer puts `<anonymous>:LINE: Kind: message` first, then the source line.
    first = lines[0] if lines else text
    return _LINE.sub("line \\1", first), line


@dataclass
class Isolate:
    """A compiled query in its own isolate. Calls block: run them off the event loop."""

    context: MiniRacer
    shape: Shape
    batch_timeout_s: float
    _functions: dict[str, JSFunction] = field(default_factory=dict)

    @classmethod
    def compile(
        cls,
        query: str,
        *,
        emit_enabled: bool,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        batch_timeout_s: float = DEFAULT_BATCH_TIMEOUT_S,
    ) -> Isolate:
        """Run the prelude and the query; `QueryError` if the query does not compile, throws
        while it defines itself, or defines no projection."""
        context = MiniRacer()
        try:
            context.set_hard_memory_limit(memory_bytes)
            context.eval(PRELUDE)
            try:
                context.eval(query, timeout_sec=batch_timeout_s)
                described = context.eval(f"__esdb.describe({'true' if emit_enabled else 'false'})")
            except JSEvalException as e:
                raise QueryError(*_message(e)) from e
            assert isinstance(described, str)
            return cls(context, _shape.decode(described), batch_timeout_s)
        except BaseException:
            context.close()
            raise

    def load(self, states: dict[str, msgspec.Raw], shared: msgspec.Raw | None) -> None:
        """Give the isolate the stored partition states (JSON texts) to continue from."""
        self._call("__esdb.load", _json.encode({"states": states, "shared": shared}))

    def process(self, batch: bytes) -> BatchOutcome:
        """Handle a batch (a JSON array of prelude events); `ProjectionFault` on a throw,
        the time limit or the memory limit."""
        return _outcome.decode(self._call("__esdb.process", batch))

    def _call(self, function: str, argument: bytes) -> str:
        # The argument goes in as a JS string through a function object: evaluating a new
        # script per batch would have V8 compile (and cache) each batch's text, and a long
        # run hits the heap limit on the cache alone.
        found = self._functions.get(function)
        if found is None:
            found = self._functions[function] = cast(JSFunction, self.context.eval(function))
        try:
            out = found(argument.decode(), timeout_sec=self.batch_timeout_s)
        except JSEvalException as e:
            raise self._fault(e) from e
        assert isinstance(out, str)
        return out

    def _fault(self, error: JSEvalException) -> ProjectionFault:
        if isinstance(error, JSTimeoutException):
            return ProjectionFault(
                f"the batch took over its time limit of {self.batch_timeout_s:g} s",
                self._index(),
            )
        # A function call reports the heap limit as a bare termination, not as JSOOMException.
        if isinstance(error, JSOOMException) or self.context.was_hard_memory_limit_reached():
            return ProjectionFault("the projection went over its memory limit", -1)
        return ProjectionFault(_message(error)[0], self._index())

    def _index(self) -> int:
        try:
            index = self.context.eval("__esdb.current()", timeout_sec=1)
        except JSEvalException:
            return -1
        return index if isinstance(index, int) else -1

    def close(self) -> None:
        """Free the isolate."""
        self.context.close()
