"""MultipartService over the real upload and download services, with the other peers in memory: parts
are chunked on their own (a part that is no multiple of the chunk size ends in a short chunk), a
completion commits the parts' chunk lists as they are, and the download path reads a version of
variable chunk sizes whole and by any range; UploadPartCopy references whole chunks and rewrites
only the chunks its range cuts; every rule of the part list is enforced."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from peer.clock import ManualClock
from peer.errors import (
    InvalidPart,
    InvalidPartOrder,
    InvalidRequest,
    PartTooSmall,
    PreconditionFailed,
    UploadNotFound,
)
from peer.files import UploadProof
from peer.files.limits import ClientLimits
from peer.files.multipart import MIN_PART_SIZE, MultipartService, PartDigests, combined_digest
from peer.metadata.open import open_store
from peer.metadata.store import AsyncMetadata, ChunkRef, FileRefSpec, NewVersion, VersionSpec
from peer.storage.chunkstore import ChunkStore, xxh3_64
from peer.transfer.download import DownloadService
from peer.transfer.peers import FetchedChunk
from peer.transfer.upload import UploadService
from tests.fakes import AllAliveView

CHUNK = 1024 * 1024


class _MemoryPeers:
    """Every other peer, as one dictionary of chunk copies."""

    def __init__(self) -> None:
        self.chunks: dict[str, bytes] = {}

    def writer(self) -> _MemoryPeers:
        return self

    async def put(self, node_id: str, chunk_id: str, data: bytes | memoryview, xxh3: int | None = None) -> None:
        assert hashlib.sha256(data).hexdigest() == chunk_id
        self.chunks[chunk_id] = bytes(data)

    async def get(self, node_id: str, chunk_id: str) -> FetchedChunk:
        data = self.chunks[chunk_id]
        return FetchedChunk(data, xxh3_64(data))

    async def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    async def has_many(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        raise NotImplementedError

    async def delete(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        raise NotImplementedError

    async def compare_digests(self, *args: Any) -> Any:
        raise NotImplementedError

    async def stats(self, node_id: str, timeout_s: float) -> dict[str, Any]:
        raise NotImplementedError


class _Setup:
    def __init__(self, tmp_path: Path) -> None:
        view = AllAliveView()
        peers = _MemoryPeers()
        store = ChunkStore(tmp_path / "data")
        self.metadata = AsyncMetadata(open_store(f"sqlite:///{tmp_path / 'meta.db'}"))
        clock = ManualClock(start=1.7e9)
        self.uploads = UploadService(view, store, peers, self.metadata, clock,  # type: ignore[arg-type]
                                     placement=view.placement, chunk_size=CHUNK, window=4)
        self.downloads = DownloadService(view, store, peers, self.metadata,  # type: ignore[arg-type]
                                         placement=view.placement, window=4)
        self.multipart = MultipartService(self.uploads, self.downloads, self.metadata, lambda: None,
                                          ClientLimits(), clock)

    async def part(self, upload_id: str, number: int, data: bytes, name: str = "b/obj") -> str:
        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 300_000):  # pieces that do not line up with chunks
                yield data[start : start + 300_000]
                await asyncio.sleep(0)

        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        stored = await self.multipart.upload_part(upload_id, name, number, pieces(), UploadProof(declared=len(data)),
                                                  lambda _sha256: PartDigests(md5, {}))
        assert (stored.size, stored.etag, stored.sha256) == (len(data), md5, hashlib.sha256(data).hexdigest())
        return md5

    async def read(self, name: str, offset: int = 0, length: int = 0) -> bytes:
        _, _, pieces = await self.downloads.open(FileRefSpec(name=name), VersionSpec(), offset, length)
        return b"".join([bytes(piece.data) async for piece in pieces])


@pytest.fixture
def setup(tmp_path: Path) -> _Setup:
    return _Setup(tmp_path)


PARTS = [os.urandom(MIN_PART_SIZE + 100_000), os.urandom(MIN_PART_SIZE), os.urandom(1000)]


async def test_completion_commits_the_parts_chunks_and_every_range_reads_back(setup: _Setup) -> None:
    upload = await setup.multipart.create("b/obj", content_type="text/plain", metadata={"owner": "ana"})
    etags = [await setup.part(upload.upload_id, n, data) for n, data in enumerate(PARTS, 1)]
    parts = await setup.metadata.list_parts(upload.upload_id, 0, 10)
    record = await setup.multipart.complete(upload.upload_id, "b/obj", list(enumerate(etags, 1)),
                                            lambda combined: {"etag": combined.etag})
    assert record.chunks == tuple(chunk for part in parts for chunk in part.chunks)
    assert [c.size for c in record.chunks] == [CHUNK] * 5 + [100_000] + [CHUNK] * 5 + [1000]
    data = b"".join(PARTS)
    digests = b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in PARTS)
    assert record.metadata == {"owner": "ana", "etag": hashlib.md5(digests, usedforsecurity=False).hexdigest() + "-3"}
    assert record.metadata["etag"] == combined_digest(etags)
    shas = b"".join(hashlib.sha256(p).digest() for p in PARTS)
    assert (record.size, record.sha256, record.content_type) == (len(data), hashlib.sha256(shas).hexdigest() + "-3",
                                                                 "text/plain")
    assert await setup.read("b/obj") == data
    boundary = len(PARTS[0])
    for offset, length in [(boundary - 10, 20), (5 * CHUNK - 1, 100_002), (boundary - 1, len(PARTS[1]) + 2),
                           (len(data) - 1001, 1001), (3, 2 * len(PARTS[0]))]:
        assert await setup.read("b/obj", offset, length) == data[offset : offset + length]
    with pytest.raises(UploadNotFound):  # completion removed the upload
        await setup.multipart.list_parts(upload.upload_id, "b/obj", 0, 10)


async def test_the_part_list_is_checked(setup: _Setup) -> None:
    upload = await setup.multipart.create("b/obj")
    small = await setup.part(upload.upload_id, 1, b"x" * 1000)
    big = await setup.part(upload.upload_id, 2, PARTS[1])
    last = await setup.part(upload.upload_id, 3, b"tail")
    complete = setup.multipart.complete
    with pytest.raises(InvalidPartOrder):
        await complete(upload.upload_id, "b/obj", [(2, big), (1, small)])
    with pytest.raises(InvalidPartOrder):
        await complete(upload.upload_id, "b/obj", [(2, big), (2, big)])
    with pytest.raises(InvalidPart):
        await complete(upload.upload_id, "b/obj", [(2, big), (4, last)])
    with pytest.raises(InvalidPart):
        await complete(upload.upload_id, "b/obj", [(2, big), (3, small)])
    with pytest.raises(PartTooSmall):
        await complete(upload.upload_id, "b/obj", [(1, small), (2, big)])
    with pytest.raises(UploadNotFound):  # another object's upload
        await complete(upload.upload_id, "b/other", [(2, big)])
    with pytest.raises(InvalidRequest):
        await setup.part(upload.upload_id, 10_001, b"x")
    record = await complete(upload.upload_id, "b/obj", [(2, f'"{big.upper()}"'), (3, last)])
    assert await setup.read("b/obj") == PARTS[1] + b"tail"
    assert record.size == len(PARTS[1]) + 4


async def test_a_part_uploaded_again_replaces_the_first(setup: _Setup) -> None:
    upload = await setup.multipart.create("b/obj")
    first = await setup.part(upload.upload_id, 1, b"first")
    second = await setup.part(upload.upload_id, 1, b"second")
    with pytest.raises(InvalidPart):
        await setup.multipart.complete(upload.upload_id, "b/obj", [(1, first)])
    await setup.multipart.complete(upload.upload_id, "b/obj", [(1, second)])
    assert await setup.read("b/obj") == b"second"


async def test_a_conditional_completion_is_judged_at_the_commit_and_a_refused_one_stays_open(
    setup: _Setup,
) -> None:
    """Whatever an edge judged before, the commit decides: a create-only completion of a name that
    has a version by then, or one naming a version that is no longer the latest, writes nothing and
    leaves the upload with its parts to complete, unconditionally or again, or to abort."""
    first = await setup.multipart.create("b/obj")
    await setup.part(first.upload_id, 1, b"first")
    second = await setup.multipart.create("b/obj")
    etag = await setup.part(second.upload_id, 1, b"second")
    winner = await setup.multipart.complete(first.upload_id, "b/obj", [(1, md5(b"first"))], if_latest="")
    with pytest.raises(PreconditionFailed):
        await setup.multipart.complete(second.upload_id, "b/obj", [(1, etag)], if_latest="")
    assert await setup.read("b/obj") == b"first"
    _, parts, _ = await setup.multipart.list_parts(second.upload_id, "b/obj", 0, 10)
    assert [p.etag for p in parts] == [etag]
    third = await setup.multipart.create("b/obj")
    await setup.part(third.upload_id, 1, b"third")
    await setup.multipart.complete(third.upload_id, "b/obj", [(1, md5(b"third"))], if_latest=winner.version_id)
    with pytest.raises(PreconditionFailed):  # the version it names is no longer the latest
        await setup.multipart.complete(second.upload_id, "b/obj", [(1, etag)], if_latest=winner.version_id)
    await setup.multipart.complete(second.upload_id, "b/obj", [(1, etag)])
    assert await setup.read("b/obj") == b"second"


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


async def test_abort_forgets_the_upload(setup: _Setup) -> None:
    upload = await setup.multipart.create("b/obj")
    await setup.part(upload.upload_id, 1, b"data")
    await setup.multipart.abort(upload.upload_id, "b/obj")
    with pytest.raises(UploadNotFound):
        await setup.part(upload.upload_id, 2, b"more")
    with pytest.raises(UploadNotFound):
        await setup.multipart.abort(upload.upload_id, "b/obj")
    with pytest.raises(UploadNotFound):
        await setup.multipart.abort("not-an-id", "b/obj")


async def test_a_copied_part_references_whole_chunks_and_rewrites_cut_ones(setup: _Setup) -> None:
    source_data = os.urandom(7 * CHUNK + 500)
    source_upload = await setup.multipart.create("b/src")
    await setup.part(source_upload.upload_id, 1, source_data, name="b/src")
    source = await setup.multipart.complete(source_upload.upload_id, "b/src", [
        (1, hashlib.md5(source_data, usedforsecurity=False).hexdigest())])
    upload = await setup.multipart.create("b/obj")
    aligned = await setup.multipart.copy_part(upload.upload_id, "b/obj", 1, source, CHUNK, 5 * CHUNK)
    assert aligned.chunks == source.chunks[1:6]
    cut = await setup.multipart.copy_part(upload.upload_id, "b/obj", 2, source, CHUNK - 10, 5 * CHUNK + 20)
    assert cut.chunks[1:6] == source.chunks[1:6]
    assert [c.size for c in cut.chunks] == [10] + [CHUNK] * 5 + [10]
    assert cut.chunks[0].chunk_id == hashlib.sha256(source_data[CHUNK - 10 : CHUNK]).hexdigest()
    whole = await setup.multipart.copy_part(upload.upload_id, "b/obj", 3, source, 0, 0)
    assert whole.chunks == source.chunks
    expected = source_data[CHUNK : 6 * CHUNK] + source_data[CHUNK - 10 : 6 * CHUNK + 10] + source_data
    for copied, data in [(aligned, expected[: 5 * CHUNK]), (cut, expected[5 * CHUNK : 10 * CHUNK + 20])]:
        assert (copied.size, copied.etag, copied.sha256) == (
            len(data), hashlib.md5(data, usedforsecurity=False).hexdigest(), hashlib.sha256(data).hexdigest())
    record = await setup.multipart.complete(upload.upload_id, "b/obj", [
        (1, aligned.etag), (2, cut.etag), (3, whole.etag)])
    assert await setup.read("b/obj") == expected
    assert record.chunks[:5] == source.chunks[1:6]


async def test_a_version_of_uneven_chunks_reads_by_its_recorded_sizes(setup: _Setup) -> None:
    pieces = [os.urandom(size) for size in (CHUNK, 17, CHUNK, 1, 300_000)]
    refs: list[ChunkRef] = []
    for data in pieces:
        written = await setup.uploads.write(_once(data))
        refs.extend(written.chunks)
    data = b"".join(pieces)
    await setup.metadata.commit_version(NewVersion("b/uneven", len(data), "x", tuple(refs)))
    assert await setup.read("b/uneven") == data
    for offset in range(CHUNK - 2, CHUNK + 20, 3):
        for length in (1, 2, 17, 19, CHUNK):
            assert await setup.read("b/uneven", offset, length) == data[offset : offset + length]
    assert [ref.size for ref in refs] == [CHUNK, 17, CHUNK, 1, 300_000]


async def test_uploads_list_with_common_prefixes_and_markers(setup: _Setup) -> None:
    ids: dict[str, list[str]] = {}
    for name in ["b/a", "b/a", "b/d/1", "b/d/2", "b/e"]:
        ids.setdefault(name, []).append((await setup.multipart.create(name)).upload_id)
    page = await setup.multipart.list_uploads("b/", "/", "", "", 2)
    assert [u.name for u in page.uploads] == ["b/a", "b/a"] and page.prefixes == ()
    assert page.truncated and (page.next_key_marker, page.next_upload_id_marker) == ("b/a", max(ids["b/a"]))
    page = await setup.multipart.list_uploads("b/", "/", page.next_key_marker, page.next_upload_id_marker, 1)
    assert page.prefixes == ("b/d/",) and page.truncated and page.next_key_marker == "b/d/"
    page = await setup.multipart.list_uploads("b/", "/", page.next_key_marker, page.next_upload_id_marker, 5)
    assert [u.name for u in page.uploads] == ["b/e"] and not page.truncated
    flat = await setup.multipart.list_uploads("b/", "", "b/a", "", 10)
    assert [u.name for u in flat.uploads] == ["b/d/1", "b/d/2", "b/e"]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
