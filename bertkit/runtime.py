"""Process-wide settings that make training fast on the machine it runs on.

    tune_allocator()   # once, before training: keep freed memory in the process (glibc)

glibc returns large freed blocks (above the mmap threshold, e.g. the MLM logits of every step) to the kernel
and maps them again on the next step: page faults and zeroing that took 30–47% of CPU time on a stock BERT
step here. Raising the mmap and trim thresholds keeps those blocks in the process' heap, as jemalloc or
tcmalloc would; memory is reused, not leaked. A no-op where glibc is not the C library.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap and stay there when freed

_tuned = False


def tune_allocator() -> bool:
    """Apply the glibc thresholds once per process; True if they were applied."""
    global _tuned
    if _tuned:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    _tuned = bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * KEEP_BYTES))
    return _tuned
