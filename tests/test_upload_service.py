"""UploadService against fakes of the rest of the peer: the loop receives the next chunk while earlier
ones are hashed, and still every chunk id, the file's SHA-256 and the committed chunk list come out
right and in order; a failed chunk leaves no version; the version records the policy it was placed with."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from peer.clock import ManualClock
from peer.errors import InsufficientReplicas, PeerUnavailable
from peer.metadata.open import open_store
from peer.metadata.store import AsyncMetadata, FileRefSpec, VersionSpec
from peer.ring.policy import Policy
from peer.storage.chunkstore import ChunkStore, xxh3_64
from peer.transfer.peers import DigestAnswer, FetchedChunk
from peer.transfer.upload import UploadService, UploadSpec
from tests.fakes import NODES, AllAliveView

CHUNK = 64 * 1024


class _Peers:
    """Records remote puts; each checks what an honest receiver checks (the transfer checksum)."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.puts: list[tuple[str, str]] = []
        self.fail_on = fail_on

    def writer(self) -> _Peers:
        return self

    async def put(self, node_id: str, chunk_id: str, data: bytes | memoryview, xxh3: int | None = None) -> None:
        await asyncio.sleep(0.001 * (len(self.puts) % 3))  # acknowledgements come back out of order
        if self.fail_on is not None and len(self.puts) >= self.fail_on:
            raise PeerUnavailable(node_id, "refused by the test")
        assert xxh3 == xxh3_64(data) and hashlib.sha256(data).hexdigest() == chunk_id
        self.puts.append((node_id, chunk_id))

    async def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    async def get(self, node_id: str, chunk_id: str) -> FetchedChunk:
        raise NotImplementedError

    async def has_many(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        raise NotImplementedError

    async def delete(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        raise NotImplementedError

    async def compare_digests(self, node_id: str, from_node: str, ring_digest: str,
                              digests: Sequence[bytes]) -> DigestAnswer:
        raise NotImplementedError

    async def stats(self, node_id: str, timeout_s: float) -> dict[str, Any]:
        raise NotImplementedError


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


def _service(
    tmp_path: Path, peers: _Peers, policy: Policy | None = None
) -> tuple[UploadService, ChunkStore, AsyncMetadata]:
    store = ChunkStore(tmp_path / "data")
    metadata = AsyncMetadata(open_store(f"sqlite:///{tmp_path / 'meta.db'}"))
    view = AllAliveView(policy)
    service = UploadService(view, store, peers, metadata, ManualClock(),
                            placement=view.placement, chunk_size=CHUNK, window=4)
    return service, store, metadata


@pytest.mark.parametrize(("size", "piece"), [
    (0, CHUNK), (100, CHUNK), (CHUNK, CHUNK), (CHUNK + 1, 1000), (13 * CHUNK + 7, CHUNK), (9 * CHUNK, 3 * CHUNK + 5),
])
async def test_ids_file_hash_and_chunk_order_are_those_of_the_bytes(tmp_path: Path, size: int, piece: int) -> None:
    peers = _Peers()
    service, store, _ = _service(tmp_path, peers)
    data = os.urandom(size)
    record = await service.upload(UploadSpec(name="f"), _pieces(data, piece))
    expected = [hashlib.sha256(data[i : i + CHUNK]).hexdigest() for i in range(0, size, CHUNK)]
    assert [c.chunk_id for c in record.chunks] == expected
    assert [c.size for c in record.chunks] == [len(data[i : i + CHUNK]) for i in range(0, size, CHUNK)]
    assert (record.size, record.sha256) == (size, hashlib.sha256(data).hexdigest())
    for ref in record.chunks:
        assert len(set(ref.peers)) == 2
        for node in ref.peers:
            if node == NODES[0]:
                assert store.get(ref.chunk_id)
            else:
                assert (node, ref.chunk_id) in peers.puts


@pytest.mark.parametrize("size", [0, 100, CHUNK, 13 * CHUNK + 7])
async def test_a_tap_sees_every_byte_once_in_order_off_the_event_loop(tmp_path: Path, size: int) -> None:
    """An edge's digests (S3's MD5) ride in the upload's hashing pass: complete once the upload
    returns, computed in worker threads, never on the loop that receives the data."""
    service, _, _ = _service(tmp_path, _Peers())
    data = os.urandom(size)
    tapped = bytearray()
    threads: set[int] = set()

    def tap(chunk: bytes | memoryview) -> None:
        threads.add(threading.get_ident())
        tapped.extend(chunk)

    written = await service.write(_pieces(data, 3 * CHUNK + 5), tap=tap)
    assert bytes(tapped) == data and written.sha256 == hashlib.sha256(data).hexdigest()
    assert threading.get_ident() not in threads


async def test_a_chunk_that_cannot_be_placed_leaves_no_version(tmp_path: Path) -> None:
    peers = _Peers(fail_on=3)
    service, _, metadata = _service(tmp_path, peers)
    with pytest.raises(InsufficientReplicas):
        await service.upload(UploadSpec(name="f"), _pieces(os.urandom(20 * CHUNK), CHUNK))
    assert (await metadata.list_files("", 10, "")).files == ()


@pytest.mark.parametrize("policy", ["rep:1", "rep:2", "rep:3"])
async def test_the_version_records_the_policy_its_chunks_were_placed_with(tmp_path: Path, policy: str) -> None:
    service, _, metadata = _service(tmp_path, _Peers(), Policy.parse(policy))
    record = await service.upload(UploadSpec(name="f"), _pieces(os.urandom(3 * CHUNK), CHUNK))
    assert record.policy == policy
    assert (await metadata.get_version(FileRefSpec(name="f"), VersionSpec())).policy == policy
    assert all(len(set(ref.peers)) == Policy.parse(policy).width for ref in record.chunks)


async def test_a_policy_wider_than_the_usable_peers_is_refused_before_any_write(tmp_path: Path) -> None:
    peers = _Peers()
    service, _, metadata = _service(tmp_path, peers, Policy.replication(len(NODES) + 1))
    with pytest.raises(InsufficientReplicas) as caught:
        await service.upload(UploadSpec(name="f"), _pieces(os.urandom(CHUNK), CHUNK))
    assert (caught.value.required, caught.value.available) == (len(NODES) + 1, len(NODES))
    assert peers.puts == [] and (await metadata.list_files("", 10, "")).files == ()
