"""Memory that many closed event streams leave behind, given back to the system.

Each open stream holds a greenlet (or thread), its saved stack and its request's objects:
about 20 KB. When thousands close, Python frees them, but glibc keeps the freed heap for
the process (5,000 watchers left 59 MB behind). After a large drop in watchers, a
collection and ``malloc_trim`` return it; elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable
from functools import cache

log = logging.getLogger(__name__)

# A drop this large since the last peak: below it the memory is soon used again anyway.
TRIM_AFTER_DROP = 500


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)  # glibc's
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class StreamMemory:
    """Called now and then with the number of open streams; trims after a large drop."""

    def __init__(self, drop: int = TRIM_AFTER_DROP) -> None:
        self.drop = drop
        self.peak = 0
        self.trims = 0

    def check(self, watchers: int) -> bool:
        """True when it trimmed."""
        if watchers >= self.peak:
            self.peak = watchers
            return False
        if self.peak - watchers < self.drop:
            return False
        self.peak = watchers
        trim = _malloc_trim()
        if trim is None:
            return False
        gc.collect()
        trim(0)
        self.trims += 1
        log.debug("ollama-deck: memory of closed streams given back")
        return True
