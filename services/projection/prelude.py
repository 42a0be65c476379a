"""The JavaScript each projection's isolate runs before the user's query (`prelude.js`):
KurrentDB's projection API (`fromAll`, `when`, `emit`, ...) over a batch protocol.

Python calls `__esdb.describe()` once, then `__esdb.load(states)` and `__esdb.process(batch)`
per batch, each with one JSON string, and gets one JSON string back."""

from __future__ import annotations

from importlib.resources import files

PRELUDE = (files("esdb.services.projection") / "prelude.js").read_text()
