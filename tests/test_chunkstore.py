"""The chunk store's write and read recipes: every size lands byte-exact, with or without O_DIRECT."""

from __future__ import annotations

import errno
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from peer.errors import ChunkCorrupt, ChunkNotFound
from peer.storage import directio
from peer.storage.chunkstore import ChunkStore, write_durable, xxh3_64

SIZES = [0, 1, 511, 4095, 4096, 4097, 65536, 1024 * 1024, 1024 * 1024 + 123]


def _chunk(size: int, seed: int = 0) -> bytes:
    return (hashlib.sha256(seed.to_bytes(4, "big")).digest() * (size // 32 + 1))[:size]


@pytest.fixture
def no_direct_open(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A file system that refuses O_DIRECT at open (as tmpfs and some network file systems do)."""
    refused: list[str] = []
    real_open = os.open

    def fake_open(path: str | os.PathLike[str], flags: int, *args: int, **kwargs: int | None) -> int:
        if directio.O_DIRECT and flags & directio.O_DIRECT:
            refused.append(str(path))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    return refused


@pytest.mark.parametrize("size", SIZES)
def test_write_then_read_is_byte_exact(tmp_path: Path, size: int) -> None:
    data = _chunk(size)
    path = tmp_path / "ab" / "chunk"
    assert write_durable(path, data, replace=False)
    assert path.stat().st_size == size
    assert path.read_bytes() == data
    assert directio.read_all(path) == data
    assert [p.name for p in path.parent.iterdir()] == ["chunk"], "no temp file may be left behind"


@pytest.mark.parametrize("size", [4097, 1024 * 1024 + 123])
def test_memoryview_input_is_written_exactly(tmp_path: Path, size: int) -> None:
    backing = b"xx" + _chunk(size) + b"yy"
    path = tmp_path / "chunk"
    write_durable(path, memoryview(backing)[2:-2])
    assert directio.read_all(path) == backing[2:-2]


@pytest.mark.skipif(not directio.O_DIRECT, reason="O_DIRECT is Linux-only")
@pytest.mark.parametrize("size", [4096, 1024 * 1024 + 123])
def test_file_systems_refusing_o_direct_get_buffered_io(tmp_path: Path, no_direct_open: list[str], size: int) -> None:
    data = _chunk(size, seed=1)
    path = tmp_path / "chunk"
    write_durable(path, data)
    assert directio.read_all(path) == data
    assert len(no_direct_open) == 2, "both the write and the read tried O_DIRECT first"


@pytest.mark.skipif(not directio.O_DIRECT, reason="O_DIRECT is Linux-only")
def test_a_device_wanting_another_alignment_gets_a_buffered_write(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_fd: int, _view: memoryview) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(directio, "_write_direct", refuse)
    data = _chunk(3 * 4096 + 5, seed=2)
    path = tmp_path / "chunk"
    write_durable(path, data)
    assert path.read_bytes() == data


@pytest.fixture
def broken_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk whose every write fails with EIO."""
    def broken(_fd: int, _view: memoryview) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(directio, "_write_direct", broken)
    monkeypatch.setattr(directio, "_write_buffered", broken)


@pytest.mark.parametrize("replace", [True, False])
@pytest.mark.usefixtures("broken_writes")
def test_other_write_errors_propagate_and_leave_no_temp_file(tmp_path: Path, replace: bool) -> None:
    """Both recipes: named temp file (replace=True) and unnamed one where the file system allows."""
    with pytest.raises(OSError, match="Input/output"):
        write_durable(tmp_path / "chunk", _chunk(8192), replace=replace)
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_grew_after_it_was_measured_is_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    data = _chunk(5 * 4096 + 7, seed=3)
    path.write_bytes(data)
    real_fstat = os.fstat

    class Shorter:
        def __init__(self, st: os.stat_result) -> None:
            self.st_size = st.st_size - 4096

    monkeypatch.setattr(os, "fstat", lambda fd: Shorter(real_fstat(fd)))
    assert directio.read_all(path) == data


def test_store_round_trip_and_content_addressing(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    data = _chunk(1024 * 1024 + 1, seed=4)
    cid = hashlib.sha256(data).hexdigest()
    assert store.put(cid, data) is True
    assert store.put(cid, data) is False, "an intact copy is already held"
    assert store.get(cid) == data
    assert store.stats == (1, len(data))


def test_store_refuses_bytes_that_do_not_match_their_id(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    data = _chunk(8192, seed=5)
    with pytest.raises(ChunkCorrupt):
        store.put(hashlib.sha256(b"other").hexdigest(), data)
    assert store.stats == (0, 0)


def test_a_corrupt_copy_on_disk_is_quarantined_not_served(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    data = _chunk(3 * 4096, seed=6)
    cid = hashlib.sha256(data).hexdigest()
    store.put(cid, data)
    path = store.path(cid)
    rotten = bytearray(path.read_bytes())
    rotten[5000] ^= 0xFF
    path.write_bytes(bytes(rotten))
    with pytest.raises(ChunkCorrupt):
        store.get(cid)
    assert not path.exists()
    assert len(list(store.quarantine_dir.iterdir())) == 1
    with pytest.raises(ChunkNotFound):
        store.get(cid)


@pytest.mark.skipif(not directio.O_DIRECT, reason="O_DIRECT is Linux-only")
def test_a_device_refusing_the_direct_read_gets_a_buffered_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    data = _chunk(2 * 4096 + 9, seed=7)
    write_durable(path, data)

    def refuse(_fd: int, _buffers: list[memoryview]) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "readv", refuse)
    assert directio.read_all(path) == data


def test_a_sender_checksum_stands_in_for_the_hash_and_catches_damage(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    data = _chunk(70_000, seed=8)
    cid = hashlib.sha256(data).hexdigest()
    damaged = bytearray(data)
    damaged[123] ^= 0x80
    with pytest.raises(ChunkCorrupt, match="checksum"):
        store.put(cid, bytes(damaged), xxh3=xxh3_64(data))
    assert store.stats == (0, 0)
    assert store.put(cid, data, xxh3=xxh3_64(data)) is True
    assert store.get(cid) == data


@pytest.mark.parametrize("refusal", [errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL])
def test_without_unnamed_temp_files_chunks_go_through_named_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 refusal: int) -> None:
    """File systems without O_TMPFILE get the temp-name-and-link recipe."""
    def refuse(_dir_fd: int, _size: int) -> tuple[int, bool]:
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(directio, "open_unnamed", refuse)
    store = ChunkStore(tmp_path)
    data = _chunk(3 * 4096 + 5, seed=9)
    cid = hashlib.sha256(data).hexdigest()
    assert store.put(cid, data) is True
    assert store.put(cid, data) is False
    assert store.get(cid) == data
    assert [p.name for p in store.path(cid).parent.iterdir()] == [cid], "no temp file left behind"


def test_a_file_in_the_way_that_the_index_does_not_know_is_checked(tmp_path: Path) -> None:
    """A put does not look for a copy the index does not list; the link then fails on whatever is
    there, which is checked: an intact copy is kept, a rotten one quarantined and replaced."""
    store = ChunkStore(tmp_path)
    data = _chunk(5 * 4096, seed=10)
    cid = hashlib.sha256(data).hexdigest()
    path = store.path(cid)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"rotten" + data[6:])
    assert store.put(cid, data) is True
    assert store.get(cid) == data
    assert len(list(store.quarantine_dir.iterdir())) == 1

    other = _chunk(4096, seed=11)
    other_id = hashlib.sha256(other).hexdigest()
    store.path(other_id).parent.mkdir(parents=True, exist_ok=True)
    store.path(other_id).write_bytes(other)
    assert store.put(other_id, other) is False, "an intact copy already in place is kept"


def test_concurrent_puts_of_one_chunk_publish_it_once(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    data = _chunk(1024 * 1024, seed=12)
    cid = hashlib.sha256(data).hexdigest()
    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda _: store.put(cid, data), range(8)))
    assert created.count(True) == 1
    assert store.get(cid) == data and store.stats == (1, len(data))
