"""The one durable-write recipe of the client side: temporary file beside the target, fsync, rename,
fsync the directory. Downloads to a path, `dfs download` and the profiles file all go through it.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path


def write_atomically(pieces: Iterable[bytes], path: Path, mode: int | None = None) -> int:
    """Writes `pieces` to a temporary file beside `path`, fsyncs it and renames it over `path`.

    Any failure (integrity, network, Ctrl-C) removes the temporary file, so `path` is either
    untouched or the complete, verified file; the directory is fsynced so the rename survives a
    crash. `mode` None: a new file under the umask, like any file the user creates; else exactly
    `mode` from the start (a private file is never readable by others, not even empty). Returns the
    bytes written.
    """
    check_destination(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.part"
    written = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)  # the umask may have taken bits the caller asked for
            for piece in pieces:
                fh.write(piece)
                written += len(piece)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)
    return written


def check_destination(path: Path) -> None:
    """Raises the OSError a write to `path` would meet, named after `path` rather than the temporary
    file, before anything is fetched."""
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "directory does not exist", str(path.parent))


def _fsync_directory(directory: Path) -> None:
    with suppress(OSError):  # not every platform or file system can open or fsync a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
