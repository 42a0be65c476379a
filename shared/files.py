"""Small file helpers shared by services and tools."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, text: str, *, mode: int | None = None) -> None:
    """Replace `path` with `text` so that a reader sees the old or the new file, never half;
    with `mode`, the file has those permissions from the start."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if mode is not None:
        temporary.touch(mode=mode)
        temporary.chmod(mode)
    temporary.write_text(text)
    temporary.replace(path)
