"""An exclusive lock on a directory for as long as a process lives (flock on a file in it):
the kernel drops it when the process exits, however it exits, so it is never stale."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class DirLocked(Exception):
    """Another process holds the lock."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        super().__init__(f"{path} is held by {'pid ' + str(pid) if pid else 'another process'}")


class DirLock:
    """`acquire` takes the lock or raises `DirLocked`; the file names the holder's pid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock now or raise `DirLocked` naming who holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+")  # noqa: SIM115 - held open for the process's lifetime
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise DirLocked(self.path, holder(self.path)) from None
        file.truncate(0)
        file.write(f"{os.getpid()}\n")
        file.flush()
        self._file = file

    def release(self) -> None:
        """Let go of the lock (exiting does too)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def holder(path: Path) -> int | None:
    """The pid holding the lock at `path`, or None when nobody holds it."""
    try:
        file = open(path)  # noqa: SIM115
    except FileNotFoundError:
        return None
    with file:
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = file.read().strip()
            return int(text) if text.isdigit() else 0
        return None
