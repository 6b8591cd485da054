"""Anti-entropy rules that need exact timing, driven with fakes for the peers and the metadata."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from peer.clock import SystemClock
from peer.metadata.store import AsyncMetadata
from peer.metrics import PeerMetrics
from peer.repair.antientropy import AntiEntropy
from peer.ring.hashring import HashRing
from peer.ring.placement import Placement
from peer.ring.policy import Policy
from peer.storage.chunkstore import ChunkStore
from peer.transfer.peers import DigestAnswer

A, B, P = "a" * 32, "b" * 32, "c" * 32
WITH_P = HashRing.build([A, B, P], 150)
WITHOUT_P = HashRing.build([A, B], 150)


class View:
    local_id = A

    def __init__(self, ring: HashRing) -> None:
        self.ring = ring

    def is_usable(self, node_id: str) -> bool:
        return True

    def placement(self) -> Placement:
        """Placement on whatever ring the view has when asked, as a peer's live cluster does."""
        return Placement(lambda: self.ring, self.is_usable, Policy.replication(2))


class EveryChunkReferenced:
    backend = "fake"

    def referenced_chunks(self, ids: Sequence[str]) -> set[str]:
        return set(ids)

    def placements(self, ids: Sequence[str], default_policy: str) -> dict[str, object]:
        return {}  # every chunk placed under the cluster's policy


class RingChangesDuringCompare:
    """Peers that already hold everything; the ring loses P while the round compares digests."""

    def __init__(self, view: View) -> None:
        self.view = view

    async def compare_digests(self, node: str, frm: str, digest: str, digests: Sequence[bytes]) -> DigestAnswer:
        self.view.ring = WITHOUT_P
        return DigestAnswer(False, {})

    async def has_many(self, node: str, ids: Sequence[str]) -> set[str]:
        return set(ids)

    async def put(self, node: str, chunk_id: str, data: bytes) -> None:
        return None


def chunk_misplaced_on_a_until_p_leaves() -> bytes:
    while True:
        data = os.urandom(4096)
        cid = hashlib.sha256(data).hexdigest()
        if A not in WITH_P.owners(cid, 2) and A in WITHOUT_P.owners(cid, 2):
            return data


async def test_a_copy_misplaced_under_the_old_ring_is_kept_when_the_ring_changes_mid_round(tmp_path: Path) -> None:
    data = chunk_misplaced_on_a_until_p_leaves()
    cid = hashlib.sha256(data).hexdigest()
    view = View(WITH_P)
    store = ChunkStore(tmp_path)
    store.put(cid, data)
    worker = AntiEntropy(view, store, RingChangesDuringCompare(view), AsyncMetadata(EveryChunkReferenced()),  # type: ignore[arg-type]
                         PeerMetrics(), SystemClock(), placement=view.placement(), batch=256)
    await worker.work_once()
    assert A in view.ring.owners(cid, 2)
    assert store.has(cid), "an owner must never drop its own copy as misplaced"
    await worker.work_once()  # the next round, on the new ring, sees the chunk as owned
    assert store.has(cid)
