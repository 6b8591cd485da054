"""`tune_allocator()`: a client process re-uses the memory of received data instead of page-faulting it in.

A download hands ~1 MiB buffers through gRPC, the SDK and SHA-256 one after another. glibc serves an
allocation that size with a fresh mmap, or from a heap it trims back to the OS as soon as the top is
free, so the same megabyte is faulted in again for every message: about 0.3 ms of kernel time per
MiB downloaded on the 2-core VMs `make bench` runs on (page faults and zeroing were a sixth of the
client's CPU). Raising glibc's mmap and trim thresholds keeps freed buffers in the heap for the next
message. The settings are process-wide, so the SDK never applies them on its own: `dfs` does at
start, and a program that moves large files may call this once. A no-op where the C library is not
glibc; resident memory then stays up to the thresholds above what is in use.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["tune_allocator"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest; the SDK's messages (at most a few MiB) stay below it
_TRIM_THRESHOLD = 64 * 1024 * 1024


def tune_allocator() -> bool:
    """Applies the settings; False where they could not be (no glibc)."""
    libc = ctypes.util.find_library("c")
    if not libc:
        return False
    try:
        set_option = ctypes.CDLL(libc).mallopt
    except (OSError, AttributeError):
        return False
    return bool(set_option(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(set_option(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
