"""The glibc malloc settings of the services (shared/allocator.py)."""

from __future__ import annotations

import platform

from esdb.shared.allocator import tune_malloc


def test_tuning_applies_on_glibc_and_leaves_other_libcs_alone() -> None:
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert tune_malloc() is on_glibc
    # The allocator still works with large blocks from the heap.
    blocks = [bytes(256 << 10) for _ in range(8)]
    assert sum(len(block) for block in blocks) == 8 * (256 << 10)
