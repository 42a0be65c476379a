"""glibc malloc settings for processes that read NATS sockets all day.

asyncio (3.11) reads a socket with `recv(256 KiB)`: glibc serves a block that large with
`mmap`, the result is shrunk with `mremap` and freed with `munmap`, and the dynamic mmap
threshold never rises because the freed block is small by then. So every read of every message
cost three syscalls and page faults on fresh pages (seen with `strace -c` on the writer: one
mmap, mremap and munmap per append). Serving such blocks from the heap, and keeping a few MiB
of freed heap instead of trimming it each time, removes that."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20
TRIM_THRESHOLD_BYTES = 8 << 20


def tune_malloc() -> bool:
    """Apply the settings above; False where the C library is not glibc (nothing changes)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
