"""Process-wide allocator settings that keep a peer's resident memory flat under load.

Hashing and disk I/O run in worker threads, and glibc gives each thread its own malloc arena, where
freed ~1 MiB chunk buffers stay resident. Capping the arenas keeps them in a few shared heaps.
(Pinning the mmap threshold would return every buffer at once but costs a page-faulting mmap per
chunk: `make bench` measured it halving large-file throughput, so it is not done.)
A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8


def tune_allocator(arenas: int = 2) -> bool:
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_ARENA_MAX, arenas))
    log.debug("allocator tuned: %s", ok)
    return ok
