"""Content-addressed chunk files on one peer's disk, written durably and verified on every read.

Layout: DATA_DIR/chunks/ab/cd/<sha256 hex>. A chunk is durable once its file is linked into place:
the one write recipe (write_durable) writes a temp file in the same directory (an unnamed one where
the file system allows), fsyncs it, links or renames it into place and fsyncs the directory, so a
crash leaves either no chunk or a whole one, never a torn one. Stale named temp files from a crash
are removed at open. A copy whose bytes do not hash to its id moves to
quarantine/ (kept for inspection, never served). All methods block: callers run them in a thread.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import threading
import uuid
from pathlib import Path

import xxhash

from peer.errors import ChunkCorrupt, ChunkNotFound, InvalidRequest, StorageFull
from peer.storage import directio

log = logging.getLogger(__name__)

CHUNK_ID = re.compile(r"^[0-9a-f]{64}$")
TMP_MARK = ".tmp-"


def check_chunk_id(chunk_id: str) -> str:
    """Chunk ids name files, so only lowercase hex SHA-256 ever reaches a path."""
    if not isinstance(chunk_id, str) or not CHUNK_ID.fullmatch(chunk_id):
        raise InvalidRequest(f"invalid chunk id {chunk_id[:80]!r}: expected 64 lowercase hex characters")
    return chunk_id


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def xxh3_64(data: bytes | bytearray | memoryview) -> int:
    """The transfer checksum of a chunk whose sender has checked it against its id: XXH3-64 runs at
    tens of GB/s where SHA-256 runs at about 2, and catches damage in transfer just as well (it is no
    defence against a sender that lies, which could as well delete the chunk)."""
    return xxhash.xxh3_64_intdigest(data)


_UNNAMED = bool(directio.O_TMPFILE) and os.path.isdir("/proc/self/fd")  # link() of an open fd needs /proc


def write_durable(path: Path, data: bytes | bytearray | memoryview, replace: bool = True) -> bool:
    """Temp file in the target directory, write (past the page cache where possible: directio), fsync,
    rename, fsync the directory.

    With replace=False the file is published with link(), which fails when the target exists, so of
    two concurrent writers of one content-addressed chunk exactly one reports that it created it; the
    temp file is then an unnamed one (O_TMPFILE) where the file system allows it, which saves a
    random name, an unlink and two directory updates per write, and a crash cannot leave it behind.
    Returns whether this call published the file.
    """
    try:
        if not replace and _UNNAMED:
            published = _publish_unnamed(path, data)
            if published is not None:
                return published
        return _publish_named(path, data, replace)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StorageFull(f"no space left for {path.name}") from exc
        raise


def _publish_unnamed(path: Path, data: bytes | bytearray | memoryview) -> bool | None:
    """write_durable(replace=False) through an unnamed temp file; None where the file system has none."""
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fd, direct = directio.open_unnamed(dir_fd, len(data))
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):  # no O_TMPFILE on this file system
                return None
            raise
        try:
            directio.write_all(fd, data, direct)
            os.fsync(fd)
            os.link(f"/proc/self/fd/{fd}", path.name, dst_dir_fd=dir_fd)  # linkat(AT_SYMLINK_FOLLOW)
        except FileExistsError:
            return False
        finally:
            os.close(fd)
        os.fsync(dir_fd)
        return True
    finally:
        os.close(dir_fd)


def _publish_named(path: Path, data: bytes | bytearray | memoryview, replace: bool) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{uuid.uuid4().hex[:12]}")
    try:
        fd, direct = directio.open_new(tmp, len(data))
        try:
            directio.write_all(fd, data, direct)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return True


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_received(chunk_id: str, data: bytes | bytearray | memoryview, xxh3: int | None) -> None:
    """Raises ChunkCorrupt unless `data` arrived as its sender had it: against the sender's XXH3-64
    when it sent one (a sender that has checked the bytes against the id itself), else against the id."""
    if xxh3 is not None:
        if xxh3_64(data) != xxh3:
            raise ChunkCorrupt(chunk_id, "the transfer (bytes do not match the sender's checksum)")
    elif sha256_hex(data) != chunk_id:
        raise ChunkCorrupt(chunk_id, "the sender (bytes do not match the chunk id)")


class ChunkStore:
    """Chunks of one peer. An in-memory index (id -> size) mirrors the directory so that repair,
    scrub and GC rounds list what is held without walking the disk; one lock orders every change
    to a chunk's presence, so GC's "unreferenced and stale" check and an upload re-using the chunk
    cannot interleave."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "chunks"
        self.quarantine_dir = data_dir / "quarantine"
        self.root.mkdir(parents=True, exist_ok=True)
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}
        self._bytes = 0
        self.version = 0  # bumped on every change, so derived indexes know when to rebuild
        self.quarantined = 0  # copies moved to quarantine since start, whoever found them corrupt
        self._recover()

    def _recover(self) -> None:
        """Drops temp files a crash left behind and indexes what is held."""
        removed = 0
        for path in self.root.glob("*/*/*"):
            if TMP_MARK in path.name:
                path.unlink(missing_ok=True)
                removed += 1
            elif CHUNK_ID.fullmatch(path.name):
                self._sizes[path.name] = path.stat().st_size
        self._bytes = sum(self._sizes.values())
        if removed:
            log.info("removed %d stale temp chunk files", removed)

    def path(self, chunk_id: str) -> Path:
        check_chunk_id(chunk_id)
        return self.root / chunk_id[:2] / chunk_id[2:4] / chunk_id

    @property
    def stats(self) -> tuple[int, int]:
        """(chunk count, bytes) held, kept current without walking the disk."""
        return len(self._sizes), self._bytes

    def ids(self) -> list[str]:
        """A snapshot of the ids held."""
        with self._lock:
            return list(self._sizes)

    def size_of(self, chunk_id: str) -> int | None:
        return self._sizes.get(chunk_id)

    def has(self, chunk_id: str) -> bool:
        return self.path(chunk_id).is_file()

    def put(
        self, chunk_id: str, data: bytes | bytearray | memoryview, verified: bool = False, xxh3: int | None = None
    ) -> bool:
        """Stores a chunk durably; returns False when an intact copy was already held (content addressed).

        `verified` means the caller has just hashed `data` itself. `xxh3` comes from a sender that has
        (an uploading peer): `data` is checked against it, for damage in transfer, instead of being
        hashed again. Otherwise it is hashed here, since a chunk must never be stored under an id its
        bytes do not match. Re-putting a held chunk renews its modification time: garbage collection
        only takes chunks untouched for its grace period, so an upload that re-uses a chunk protects
        it until its version is committed.

        A chunk the index does not list is written without looking for a copy first (the common case
        costs no stat); should a file be in the way after all, the link fails and that file is checked.
        """
        path = self.path(chunk_id)
        if not verified:
            check_received(chunk_id, data, xxh3)
        if chunk_id in self._sizes and self._renew_if_intact(chunk_id, path, len(data)):
            return False
        while not write_durable(path, data, replace=False):
            if self._renew_if_intact(chunk_id, path, len(data)):
                return False
        with self._lock:
            self._sizes[chunk_id] = len(data)
            self._bytes += len(data)
            self.version += 1
        return True

    def _renew_if_intact(self, chunk_id: str, path: Path, size: int) -> bool:
        """Whether an intact copy is in place, renewing its mtime if so; a wrong one is quarantined so
        a new write can replace it (an upload must never count a rotten copy as one of its R replicas)."""
        if not self._held_intact(chunk_id, path, size):
            return False
        with self._lock:  # GC checks the mtime under this lock: renewing it here wins the race
            try:
                os.utime(path)
                return True
            except FileNotFoundError:
                return False  # collected meanwhile: write it anew

    def _held_intact(self, chunk_id: str, path: Path, size: int) -> bool:
        """Whether an intact copy is in place; a wrong one is quarantined."""
        try:
            if path.stat().st_size == size and sha256_hex(directio.read_all(path)) == chunk_id:
                return True
        except FileNotFoundError:
            return False
        log.warning("chunk %s held here is corrupt; replacing it", chunk_id)
        self.quarantine(chunk_id)
        return False

    def get(self, chunk_id: str) -> bytes:
        """Returns the chunk's bytes after checking their SHA-256; a corrupt copy is quarantined."""
        path = self.path(chunk_id)
        try:
            data = directio.read_all(path)
        except FileNotFoundError:
            with self._lock:
                self._forget(chunk_id, path, unlink=False)
            raise ChunkNotFound(chunk_id) from None
        if sha256_hex(data) != chunk_id:
            self.quarantine(chunk_id)
            raise ChunkCorrupt(chunk_id, "local disk")
        return data

    def quarantine(self, chunk_id: str) -> None:
        path = self.path(chunk_id)
        target = self.quarantine_dir / f"{chunk_id}.{uuid.uuid4().hex[:8]}"
        with self._lock:
            try:
                os.replace(path, target)
                self.quarantined += 1
            except FileNotFoundError:
                return
            finally:
                self._forget(chunk_id, path, unlink=False)
        log.warning("chunk %s failed its SHA-256 check and was quarantined to %s", chunk_id, target)

    def delete(self, chunk_id: str) -> bool:
        path = self.path(chunk_id)
        with self._lock:
            return self._forget(chunk_id, path, unlink=True)

    def delete_if_stale(self, chunk_id: str, cutoff_wall: float) -> bool:
        """Deletes the chunk only if nothing wrote or re-used it since cutoff (time.time() scale)."""
        path = self.path(chunk_id)
        with self._lock:
            try:
                if path.stat().st_mtime >= cutoff_wall:
                    return False
            except FileNotFoundError:
                return False
            return self._forget(chunk_id, path, unlink=True)

    def _forget(self, chunk_id: str, path: Path, unlink: bool) -> bool:
        """Drops a chunk from the index (and the disk); callers hold the lock."""
        existed = False
        if unlink:
            try:
                path.unlink()
                existed = True
            except FileNotFoundError:
                pass
        size = self._sizes.pop(chunk_id, None)
        if size is not None:
            self._bytes -= size
            self.version += 1
        return existed or size is not None
