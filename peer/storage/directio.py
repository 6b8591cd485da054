"""Reading and writing chunk files past the page cache (O_DIRECT) where the file system allows it.

Every chunk is fsynced as soon as it is written, so the page cache buys a write nothing; its price
does show. On the hosts `make bench` runs on (2-core VMs, ext4) a buffered write of a fresh 1 MiB
file costs about 2.5 ms of kernel CPU (page allocation and dirty-page accounting), more than hashing
it twice, while the same write with O_DIRECT costs about 0.1 ms. Reads are the same story at a smaller
scale (filling the cache with a chunk costs more than reading it directly and copying it once), and a
chunk store read by downloads, repair and the scrubber would only churn the cache. MinIO reads and
writes objects the same way.

O_DIRECT wants the memory, the file offset and the length aligned to the device's block size. The
whole blocks of the data are copied into a reused page-aligned buffer (one memcpy, no page faults
after the first use) and written directly; the tail shorter than a block is written after clearing
O_DIRECT on the descriptor, through the page cache. A read lands in such a buffer and leaves it as
one bytes copy. A file system that refuses O_DIRECT (tmpfs, some overlay or network file systems)
gets ordinary buffered I/O. Writers still fsync.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

ALIGN = 4096  # covers 512-byte and 4 KiB logical blocks, and is the page size the buffers start on
O_DIRECT: int = getattr(os, "O_DIRECT", 0)
O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)
_POOLED = 16  # at most one buffer per I/O thread stays allocated between writes


class _BufferPool:
    """Page-aligned buffers (anonymous mmaps) kept for re-use: a fresh one page-faults on first touch."""

    def __init__(self) -> None:
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    @contextmanager
    def get(self, size: int) -> Iterator[mmap.mmap]:
        with self._lock:
            buf = self._free.pop() if self._free else None
        if buf is None or len(buf) < size:
            buf = mmap.mmap(-1, size)
        try:
            yield buf
        finally:
            with self._lock:
                if len(self._free) < _POOLED:
                    self._free.append(buf)


_pool = _BufferPool()


def _open(path: os.PathLike[str] | str, flags: int, direct: bool, dir_fd: int | None = None) -> tuple[int, bool]:
    """(fd, whether O_DIRECT is on): with O_DIRECT when wanted, unless the file system refuses it."""
    if direct and O_DIRECT:
        try:
            return os.open(path, flags | O_DIRECT, 0o644, dir_fd=dir_fd), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, flags, 0o644, dir_fd=dir_fd), False


def open_unnamed(dir_fd: int, size: int) -> tuple[int, bool]:
    """An unnamed new file (O_TMPFILE) in the directory `dir_fd`, for writing `size` bytes: (fd,
    whether O_DIRECT is on). Raises OSError (EOPNOTSUPP, EISDIR) where the file system has none."""
    if not O_TMPFILE:
        raise OSError(errno.EOPNOTSUPP, "unnamed temporary files are not supported here")
    return _open(".", os.O_WRONLY | O_TMPFILE, size >= ALIGN, dir_fd=dir_fd)


def _buffered_from_now(fd: int) -> None:
    """Clears O_DIRECT on `fd`, for what is not a whole number of aligned blocks."""
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~O_DIRECT)


def open_new(path: os.PathLike[str] | str, size: int) -> tuple[int, bool]:
    """Creates `path` (which must not exist) for writing `size` bytes: (fd, whether O_DIRECT is on)."""
    return _open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, size >= ALIGN)


def write_all(fd: int, data: bytes | bytearray | memoryview, direct: bool) -> None:
    """Writes `data` at the start of the new file `fd`, whole blocks directly when `direct`."""
    view = memoryview(data).cast("B")
    bulk = len(view) - len(view) % ALIGN if direct else 0
    if bulk:
        try:
            _write_direct(fd, view[:bulk])
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            bulk = 0  # the device wants another alignment: the whole write goes buffered
            os.lseek(fd, 0, os.SEEK_SET)
    if bulk == len(view):
        return
    if direct:
        _buffered_from_now(fd)
    _write_buffered(fd, view[bulk:])


def _write_direct(fd: int, view: memoryview) -> None:
    with _pool.get(len(view)) as buf, memoryview(buf) as aligned:
        aligned[: len(view)] = view
        done = 0
        while done < len(view):
            done += os.write(fd, aligned[done : len(view)])


def _write_buffered(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_all(path: os.PathLike[str] | str) -> bytes:
    """The whole file, read directly into an aligned buffer when it is at least a block long."""
    fd, direct = _open(path, os.O_RDONLY, True)
    try:
        size = os.fstat(fd).st_size
        if direct and size >= ALIGN:
            data = _read_direct(fd, size)
            if data is not None:
                return data
            os.lseek(fd, 0, os.SEEK_SET)
        if direct:
            _buffered_from_now(fd)
        return _read_buffered(fd, size)
    finally:
        os.close(fd)


def _read_direct(fd: int, size: int) -> bytes | None:
    """The file's `size` bytes; None when they cannot be read this way (another alignment, or the
    file is no longer `size` bytes long), so the caller reads it the ordinary way."""
    span = -(-size // ALIGN) * ALIGN
    with _pool.get(span) as buf, memoryview(buf) as aligned:
        try:
            got = os.readv(fd, [aligned[:span]])
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            return None
        return bytes(aligned[:got]) if got == size else None


def _read_buffered(fd: int, size: int) -> bytes:
    """Reads to the end of the file (size is a hint: the file may have changed since fstat)."""
    parts = []
    while block := os.read(fd, max(size, ALIGN)):
        parts.append(block)
    return b"".join(parts) if len(parts) != 1 else parts[0]
