"""Process-wide allocator settings that keep a peer's resident memory flat under load.

Chunk buffers are ~1 MiB. glibc raises its mmap threshold after such buffers are freed, so later
ones come from the heap, where fragmentation keeps freed memory resident; several worker threads
also each get their own 64 MiB arena. Pinning the threshold and capping the arenas makes freed chunk
buffers go back to the OS at once. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3


def tune_allocator(mmap_threshold: int = 256 * 1024, arenas: int = 2) -> bool:
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_ARENA_MAX, arenas))
    log.debug("allocator tuned: %s", ok)
    return ok
