"""Erasure coding: the code itself, and uploads and reads of `ec:K+M` versions against a mesh of fakes.

What a user depends on: any K of the K + M fragments give back the chunk byte for byte; a lost
fragment is regenerated identical to the one written; an upload under `ec:2+1` puts each fragment
on its own peer under its own SHA-256; a read survives up to M lost or corrupt fragments, and beyond
that fails with DataLoss rather than returning wrong bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.clock import ManualClock
from peer.erasure import ErasureCode, erasure_code
from peer.errors import ChunkNotFound, ChunkUnreachable, DataLoss, PeerUnavailable
from peer.metadata.open import open_store
from peer.metadata.store import AsyncMetadata, ChunkRef, FileRefSpec, Placed, VersionSpec
from peer.repair.index import build_index
from peer.ring.policy import Policy
from peer.storage.chunkstore import ChunkStore, check_received
from peer.transfer.download import DownloadService
from peer.transfer.fragments import FragmentReader
from peer.transfer.peers import DigestAnswer, FetchedChunk
from peer.transfer.upload import UploadService, UploadSpec
from tests.fakes import NODES, AllAliveView

CHUNK = 64 * 1024
EC21 = Policy.erasure(2, 1)


# --- the code ----------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(data=st.binary(min_size=1, max_size=5000), k=st.integers(2, 6), m=st.integers(1, 3), seed=st.randoms())
def test_any_k_fragments_in_any_order_decode_to_the_chunk(data: bytes, k: int, m: int, seed: Any) -> None:
    code = erasure_code(k, m)
    fragments = code.encode(data)
    assert len(fragments) == k + m
    chosen = seed.sample(fragments, k)
    assert code.decode(chosen) == data


EXHAUSTIVE = 400  # loss patterns per K+M tried all when there are at most this many, else sampled


def _loss_patterns(width: int, parity: int, rng: random.Random) -> list[tuple[int, ...]]:
    """Every set of at most `parity` lost fragment indexes when they are few; otherwise the extremes
    (all data-side losses first, all parity lost, every single loss) and a random sample of the rest."""
    every = [combo for lost in range(parity + 1) for combo in itertools.combinations(range(width), lost)]
    if len(every) <= EXHAUSTIVE:
        return every
    chosen = {tuple(range(parity)), tuple(range(width - parity, width)), *((i,) for i in range(width))}
    while len(chosen) < EXHAUSTIVE:
        chosen.add(tuple(sorted(rng.sample(range(width), rng.randint(1, parity)))))
    return sorted(chosen)


@pytest.mark.parametrize("k", range(2, 17))
def test_every_k_and_m_in_range_decodes_with_up_to_m_fragments_lost(k: int) -> None:
    rng = random.Random(k)
    for m in range(1, 9):
        code = erasure_code(k, m)
        data = rng.randbytes(997 * k)
        fragments = code.encode(data)
        for lost in _loss_patterns(k + m, m, rng):
            left = [f for i, f in enumerate(fragments) if i not in lost]
            assert code.decode(left) == data, f"ec:{k}+{m} losing {lost}"
        with pytest.raises(DataLoss):
            code.decode(fragments[: k - 1])


@pytest.mark.parametrize(("k", "m"), [(2, 1), (4, 2), (10, 4)])
def test_a_lost_fragment_is_rebuilt_identical_from_k_others(k: int, m: int) -> None:
    code = erasure_code(k, m)
    data = os.urandom(300_001)
    fragments = code.encode(memoryview(data))  # a view is accepted: it is copied at the boundary
    for lost in (0, k - 1, k + m - 1):
        others = [f for i, f in enumerate(fragments) if i != lost][:k]
        assert code.rebuild(others, lost) == fragments[lost]


def test_the_data_fragments_hold_the_chunk_in_order() -> None:
    """Systematic: an intact chunk is its data fragments joined, with no decoding arithmetic."""
    data = bytes(range(256)) * 4096
    fragments = erasure_code(4, 2).encode(data)
    assert all(data[i * len(data) // 4 : (i + 1) * len(data) // 4] in fragments[i] for i in range(4))


def test_fewer_than_k_fragments_are_data_loss() -> None:
    code = erasure_code(4, 2)
    fragments = code.encode(os.urandom(10_000))
    with pytest.raises(DataLoss):
        code.decode(fragments[:3])


# --- uploads and reads -------------------------------------------------------------------------------


class _Mesh:
    """The other peers' disks as dicts; this peer (NODES[0]) stores in its real ChunkStore."""

    def __init__(self) -> None:
        self.disks: dict[str, dict[str, bytes]] = {node: {} for node in NODES[1:]}
        self.down: set[str] = set()
        self.asked: list[str] = []

    def writer(self) -> _Mesh:
        return self

    async def put(self, node_id: str, chunk_id: str, data: bytes | memoryview, xxh3: int | None = None) -> None:
        await asyncio.sleep(0)
        check_received(chunk_id, data, xxh3)
        self.disks[node_id][chunk_id] = bytes(data)

    async def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    async def get(self, node_id: str, chunk_id: str) -> FetchedChunk:
        self.asked.append(chunk_id)
        await asyncio.sleep(0)
        if node_id in self.down:
            raise PeerUnavailable(node_id, "partitioned away")
        if chunk_id not in self.disks[node_id]:
            raise ChunkNotFound(chunk_id)
        return FetchedChunk(self.disks[node_id][chunk_id])

    async def has_many(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        return {c for c in chunk_ids if c in self.disks[node_id]}

    async def delete(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        raise NotImplementedError

    async def compare_digests(self, node_id: str, from_node: str, ring_digest: str,
                              digests: Sequence[bytes]) -> DigestAnswer:
        raise NotImplementedError

    async def stats(self, node_id: str, timeout_s: float) -> dict[str, Any]:
        raise NotImplementedError


async def _pieces(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 10_000):
        yield data[start : start + 10_000]


class _Cluster:
    def __init__(self, tmp_path: Path) -> None:
        self.mesh = _Mesh()
        self.store = ChunkStore(tmp_path / "data")
        self.metadata = AsyncMetadata(open_store(f"sqlite:///{tmp_path / 'meta.db'}"))
        self.view = AllAliveView(EC21)
        self.uploads = UploadService(self.view, self.store, self.mesh, self.metadata, ManualClock(),
                                     placement=self.view.placement, chunk_size=CHUNK, window=4)
        self.downloads = DownloadService(self.view, self.store, self.mesh, self.metadata,  # type: ignore[arg-type]
                                         placement=self.view.placement, window=4)

    def holds(self, node: str, stored_id: str) -> bool:
        return self.store.has(stored_id) if node == NODES[0] else stored_id in self.mesh.disks[node]

    def lose(self, node: str, stored_id: str) -> None:
        if node == NODES[0]:
            self.store.delete(stored_id)
        else:
            del self.mesh.disks[node][stored_id]

    def corrupt(self, node: str, stored_id: str) -> None:
        if node == NODES[0]:
            path = self.store.path(stored_id)
            raw = bytearray(path.read_bytes())
            raw[-1] ^= 1
            path.write_bytes(raw)
        else:
            raw = bytearray(self.mesh.disks[node][stored_id])
            raw[100] ^= 1
            self.mesh.disks[node][stored_id] = bytes(raw)

    async def read(self) -> bytes:
        _, _, pieces = await self.downloads.open(FileRefSpec(name="f"), VersionSpec(), 0, 0)
        return b"".join([bytes(p.data) async for p in pieces])


async def test_each_fragment_is_stored_once_on_its_own_peer_under_its_own_hash(tmp_path: Path) -> None:
    cluster = _Cluster(tmp_path)
    data = os.urandom(3 * CHUNK + 123)
    record = await cluster.uploads.upload(UploadSpec(name="f", policy="ec:2+1"), _pieces(data))
    assert record.policy == "ec:2+1"
    assert len(record.chunks) == 4
    for ref in record.chunks:
        assert len(ref.fragments) == 3 and len(set(ref.peers)) == 3
        assert ref.peers == cluster.view.placement.owners(ref.chunk_id, EC21)
        for node, fragment in zip(ref.peers, ref.fragments, strict=True):
            assert cluster.holds(node, fragment)
            assert not cluster.holds(node, ref.chunk_id)  # the whole chunk is stored nowhere
    stored = await cluster.metadata.get_version(FileRefSpec(name="f"), VersionSpec())
    assert stored.chunks == record.chunks
    assert await cluster.read() == data


async def test_an_intact_chunk_is_read_from_its_data_fragments_alone(tmp_path: Path) -> None:
    """Systematic code: with every data fragment intact, no parity fragment is fetched."""
    cluster = _Cluster(tmp_path)
    data = os.urandom(3 * CHUNK)
    record = await cluster.uploads.upload(UploadSpec(name="f", policy="ec:2+1"), _pieces(data))
    cluster.mesh.asked.clear()
    assert await cluster.read() == data
    parity = {ref.fragments[2] for ref in record.chunks}
    data_fragments = {f for ref in record.chunks for f in ref.fragments[:2]}
    assert not parity & set(cluster.mesh.asked)
    assert set(cluster.mesh.asked) <= data_fragments


@pytest.mark.parametrize("lost", range(3))
async def test_a_read_survives_any_one_lost_fragment_of_every_chunk(tmp_path: Path, lost: int) -> None:
    cluster = _Cluster(tmp_path)
    data = os.urandom(2 * CHUNK + 5)
    record = await cluster.uploads.upload(UploadSpec(name="f", policy="ec:2+1"), _pieces(data))
    for ref in record.chunks:
        cluster.lose(ref.peers[lost], ref.fragments[lost])
    assert await cluster.read() == data


@pytest.mark.parametrize("corrupt", range(3))
async def test_a_corrupt_fragment_is_refused_and_the_chunk_still_served(tmp_path: Path, corrupt: int) -> None:
    cluster = _Cluster(tmp_path)
    data = os.urandom(CHUNK)
    record = await cluster.uploads.upload(UploadSpec(name="f", policy="ec:2+1"), _pieces(data))
    ref = record.chunks[0]
    cluster.corrupt(ref.peers[corrupt], ref.fragments[corrupt])
    assert await cluster.read() == data


@pytest.mark.parametrize("lost", list(itertools.combinations(range(3), 2)))
async def test_more_lost_fragments_than_parity_is_data_loss_never_wrong_bytes(
    tmp_path: Path, lost: tuple[int, int]
) -> None:
    cluster = _Cluster(tmp_path)
    record = await cluster.uploads.upload(UploadSpec(name="f", policy="ec:2+1"), _pieces(os.urandom(CHUNK)))
    ref = record.chunks[0]
    for index in lost:
        cluster.lose(ref.peers[index], ref.fragments[index])
    with pytest.raises(DataLoss):
        await cluster.read()


async def test_fragments_on_peers_that_cannot_be_asked_make_the_chunk_unreachable_not_lost(tmp_path: Path) -> None:
    """Two of three fragment holders cut off: the fragments may be whole, so UNAVAILABLE, not DATA_LOSS."""
    cluster = _Cluster(tmp_path)
    record = await cluster.uploads.upload(UploadSpec(name="f", policy="ec:2+1"), _pieces(os.urandom(CHUNK)))
    ref = record.chunks[0]
    cluster.mesh.down.update(node for node in ref.peers if node != NODES[0])
    if NODES[0] in ref.peers:  # this peer's own fragment is always readable: lose it instead
        cluster.lose(NODES[0], ref.fragments[ref.peers.index(NODES[0])])
    with pytest.raises(ChunkUnreachable):
        await cluster.read()


async def test_a_chunk_decoded_to_other_bytes_than_its_id_is_data_loss_never_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every fragment verified and still the decode went wrong (a codec fault): the chunk's own SHA-256,
    checked after reassembly, refuses it."""
    cluster = _Cluster(tmp_path)
    await cluster.uploads.upload(UploadSpec(name="f", policy="ec:2+1"), _pieces(os.urandom(CHUNK)))
    real_decode = ErasureCode.decode
    monkeypatch.setattr(ErasureCode, "decode", lambda self, fragments: b"x" + real_decode(self, fragments)[1:])
    with pytest.raises(DataLoss, match="does not match its id"):
        await cluster.read()


async def test_equal_chunks_share_their_fragments_under_erasure_coding(tmp_path: Path) -> None:
    """Content addressing survives coding: the same chunk uploaded under two names is coded to the
    same fragments, stored once per peer, and both files read back."""
    cluster = _Cluster(tmp_path)
    data = os.urandom(2 * CHUNK)
    first = await cluster.uploads.upload(UploadSpec(name="f", policy="ec:2+1"), _pieces(data))
    stored = {node: dict(disk) for node, disk in cluster.mesh.disks.items()}
    second = await cluster.uploads.upload(UploadSpec(name="g", policy="ec:2+1"), _pieces(data))
    assert [ref.fragments for ref in second.chunks] == [ref.fragments for ref in first.chunks]
    assert {node: dict(disk) for node, disk in cluster.mesh.disks.items()} == stored  # nothing new stored
    assert await cluster.read() == data


async def test_a_fragment_moved_off_its_recorded_peer_is_found_on_the_ring(tmp_path: Path) -> None:
    """A rebalance or a stand-in may hold a fragment where neither its record nor its owner points:
    a read that needs it asks the rest of the ring before it gives up."""
    cluster = _Cluster(tmp_path)
    data = os.urandom(CHUNK)
    record = await cluster.uploads.upload(UploadSpec(name="f", policy="ec:2+1"), _pieces(data))
    ref = record.chunks[0]
    moved = next(i for i, node in enumerate(ref.peers) if node != NODES[0])
    elsewhere = next(n for n in NODES if n not in (ref.peers[moved], NODES[0]))
    cluster.mesh.disks[elsewhere][ref.fragments[moved]] = cluster.mesh.disks[ref.peers[moved]].pop(ref.fragments[moved])
    lost = next(i for i in range(3) if i != moved)  # so the moved fragment is needed
    cluster.lose(ref.peers[lost], ref.fragments[lost])
    assert await cluster.read() == data


async def test_a_lost_fragment_is_regenerated_byte_identical(tmp_path: Path) -> None:
    cluster = _Cluster(tmp_path)
    record = await cluster.uploads.upload(UploadSpec(name="f", policy="ec:2+1"), _pieces(os.urandom(CHUNK)))
    ref = record.chunks[0]
    original = await FragmentReader(cluster.view, cluster.store, cluster.mesh, cluster.view.placement).fetch(
        ref, EC21, 1)
    cluster.lose(ref.peers[1], ref.fragments[1])
    rebuilt = await FragmentReader(cluster.view, cluster.store, cluster.mesh, cluster.view.placement).rebuild(
        ref, EC21, 1)
    assert rebuilt == bytes(original)
    assert hashlib.sha256(rebuilt).hexdigest() == ref.fragments[1]


def test_a_coded_chunk_ref_names_its_fragments_as_what_peers_store() -> None:
    assert ChunkRef("c", 1, ("a", "b", "c"), ("f0", "f1", "f2")).stored_ids == ("f0", "f1", "f2")
    assert ChunkRef("c", 1, ("a", "b")).stored_ids == ("c",)


def test_a_fragment_shared_by_two_chunks_stays_with_the_owner_of_each() -> None:
    """Two chunks that share a fragment-sized stretch of bytes code to one fragment id; the peer that
    owns it for one chunk must not hand it to the peer that owns it for the other and drop it."""
    placement = AllAliveView(EC21).placement.pinned()
    a = "chunk-a"
    b = next(name for name in (f"chunk-{i}" for i in range(100))
             if placement.owners(name, EC21)[2] != placement.owners(a, EC21)[0])
    shared = hashlib.sha256(b"a fragment both chunks code to").hexdigest()
    placed = {shared: (Placed("ec:2+1", a, 0), Placed("ec:2+1", b, 2))}
    holders = {placement.owners(a, EC21)[0], placement.owners(b, EC21)[2]}
    assert len(holders) == 2
    for node in NODES:
        index = build_index([shared], placement, node, 1, placed)
        if node in holders:
            assert (index.owned, index.misplaced) == (1, [])
        else:
            assert index.misplaced == [shared] and set(index.owners_of_misplaced[shared]) == holders
