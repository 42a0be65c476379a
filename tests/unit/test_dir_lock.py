"""The directory lock: one holder at a time, the holder's pid readable, free once released."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from esdb.shared.dir_lock import DirLock, DirLocked, holder


def test_one_holder_at_a_time_and_who_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "data" / "esdb.lock"
    first, second = DirLock(path), DirLock(path)
    assert holder(path) is None
    first.acquire()
    assert holder(path) == os.getpid()
    with pytest.raises(DirLocked) as refused:
        second.acquire()
    assert refused.value.pid == os.getpid()
    first.release()
    assert holder(path) is None
    second.acquire()  # free again once released
    second.release()
