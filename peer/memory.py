"""Process-wide allocator settings: chunk-sized buffers re-use memory instead of page-faulting it in.

A peer allocates and frees ~1 MiB buffers all the time (received messages, chunk copies, replies).
glibc serves an allocation that size with a fresh mmap (or, after its dynamic threshold moves, from a
heap it trims back to the OS as soon as the top is free), so the same megabyte is faulted in again
and again: about 0.5 ms of kernel time per MiB on the 2-core VMs `make bench` runs on. Pinning the
mmap threshold above any chunk and the trim threshold above the peer's working set keeps freed
buffers in the heap for the next one (measured: page faults per uploaded MiB on the entry peer from
~200 to ~0; peak RSS in `make bench`'s memory section unchanged). Resident memory stays bounded by
the peak of what is in use, which the upload budget bounds, plus what stays free under the trim
threshold. Worker threads would each get their own arena, where freed buffers stay resident per
thread; capping the arenas keeps them in a few shared heaps. A no-op where the C library is not glibc.

`resident_bytes()` reads what that leaves resident (the RSS the metrics and the console show).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

STATM = "/proc/self/statm"
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value; chunks (default 1 MiB) stay below it
TRIM_THRESHOLD = 64 * 1024 * 1024


def tune_allocator(arenas: int = 2) -> bool:
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    settings = ((M_ARENA_MAX, arenas), (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    ok = all([bool(mallopt(option, value)) for option, value in settings])
    log.debug("allocator tuned: %s", ok)
    return ok


def resident_bytes(statm: str = STATM) -> int:
    """The process's resident set size now, from /proc/self/statm (its second field, in pages); 0
    where there is no /proc (not Linux). Not getrusage(): that gives the peak, not what is held now."""
    try:
        with open(statm, "rb") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")
