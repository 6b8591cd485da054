"""Anti-entropy and hinted handoff: every peer restores its own part of the placement, no coordinator.

Each round, for every other usable peer B on the ring, this peer sends 256 bucket digests of the
chunks both of them own (repair/index.py); B answers with its ids in the buckets that differ, and
the peer with the lower id of the pair pushes what the other lacks and pulls what it lacks itself
(both sides compare, to count what is under-replicated; one side moves data, so a copy moves once).
That covers re-replication after a peer dies or leaves and copying to a peer that joined.

Chunks held here that this peer does not own (hinted copies written while an owner was down, or
copies left on a former owner after the ring changed) are pushed to their owners and dropped only
once every owner holds them durably and every peer compared agreed on the ring. Only chunks some
version references are moved, so garbage is never resurrected between GC passes on two owners.
Each held id is placed by the policy of the versions that reference it (repair/index.py): a chunk of
a `rep:3` version has three owners, a fragment of an `ec:K+M` chunk exactly one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence

from peer.clock import Clock
from peer.errors import DfsError, MetadataUnavailable
from peer.metadata.store import AsyncMetadata
from peer.metrics import PeerMetrics
from peer.repair.index import PlacementIndex, bucket_digests, build_index, holders
from peer.ring.placement import Placement
from peer.storage.chunkstore import ChunkStore
from peer.transfer.peers import ChunkPeers, ClusterView

log = logging.getLogger(__name__)


class AntiEntropy:
    name = "anti-entropy"

    def __init__(
        self,
        view: ClusterView,
        store: ChunkStore,
        peers: ChunkPeers,
        metadata: AsyncMetadata,
        metrics: PeerMetrics,
        clock: Clock,
        *,
        placement: Placement,
        batch: int,
        min_rebuild_s: float = 0.0,
    ) -> None:
        """`min_rebuild_s`: under steady writes the chunk set changes all the time, and every peer's
        CompareDigests would otherwise rebuild the whole index; a ring change always rebuilds."""
        self._view = view
        self._store = store
        self._peers = peers
        self._metadata = metadata
        self._metrics = metrics
        self._clock = clock
        self._placement = placement
        self._batch = batch
        self._min_rebuild_s = min_rebuild_s
        self._index: PlacementIndex | None = None
        self._built_at = 0.0
        self._building = asyncio.Lock()

    async def index(self) -> PlacementIndex:
        """The placement index for the current ring and chunk set. It is rebuilt when the ring
        changed, or when chunks changed and the index is older than `min_rebuild_s`; one rebuild
        at a time, so a round and the peers' comparisons share it."""
        async with self._building:
            placement, version = self._placement.pinned(), self._store.version
            ring = placement.ring
            idx = self._index
            fresh = idx is not None and idx.ring_digest == ring.digest and (
                idx.store_version == version or self._clock.monotonic() - self._built_at < self._min_rebuild_s
            )
            if idx is None or not fresh:
                ids = self._store.ids()
                # Raises MetadataUnavailable: without knowing how each id is placed, no id may move.
                placed = await self._metadata.placements(ids, str(placement.policy))
                idx = await asyncio.to_thread(build_index, ids, placement, self._view.local_id, version, placed)
                self._index, self._built_at = idx, self._clock.monotonic()
            return idx

    async def answer(
        self, from_node: str, ring_digest: str, digests: Sequence[bytes]
    ) -> tuple[bool, dict[int, list[str]]]:
        """The CompareDigests handler: our ids in every bucket whose digest differs from the caller's."""
        idx = await self.index()
        if ring_digest != idx.ring_digest:
            return True, {}
        ours = bucket_digests(idx.shared.get(from_node))
        return False, {b: idx.shared_bucket(from_node, b) for b, d in enumerate(digests) if ours[b] != d}

    async def work_once(self) -> bool:
        started = self._clock.monotonic()
        idx = await self.index()
        budget = [self._batch]
        agreed = True
        under = 0
        for peer in sorted(idx.shared.keys() | set(self._view.ring.nodes)):
            if peer == self._view.local_id:
                continue
            if not self._view.is_usable(peer):
                under += idx.shared_count(peer)
                continue
            try:
                synced, lacking = await self._sync_with(peer, idx, budget)
                agreed &= synced
                under += lacking
            except (DfsError, OSError) as exc:
                agreed = False
                under += idx.shared_count(peer)
                log.info("anti-entropy with %s postponed: %s", peer[:8], exc)
        self._metrics.under_replicated.set(under)
        self._metrics.misplaced.set(len(idx.misplaced))
        if idx.misplaced and budget[0] > 0:
            await self._hand_off(idx, budget, may_drop=agreed)
        if budget[0] > 0:
            self._metrics.last_sync.set(self._clock.wall())
        self._metrics.antientropy_round.observe(self._clock.monotonic() - started)
        return budget[0] <= 0

    async def _sync_with(self, peer: str, idx: PlacementIndex, budget: list[int]) -> tuple[bool, int]:
        """Returns whether the peer agreed on the ring, and how many of our chunks it still lacks."""
        answer = await self._peers.compare_digests(peer, self._view.local_id, idx.ring_digest,
                                                   bucket_digests(idx.shared.get(peer)))
        if answer.ring_mismatch:
            return False, 0
        push: list[str] = []
        pull: list[str] = []
        for bucket, theirs in answer.differing.items():
            ours = set(idx.shared_bucket(peer, bucket))
            theirs_set = set(theirs)
            push += sorted(ours - theirs_set)
            pull += sorted(theirs_set - ours)
        push = await self._movable(idx, push)
        pull = await self._movable(idx, pull, pulled=True)
        if push:  # the peer's answer may predate its latest writes: ask before sending data
            present = await self._peers.has_many(peer, push)
            push = [c for c in push if c not in present]
        lacking = len(push)
        if self._view.local_id > peer:
            return True, lacking  # each pair is repaired by its lower id, so a copy moves once
        for chunk_id in push[: max(budget[0], 0)]:
            budget[0] -= 1
            lacking -= await self._push(peer, chunk_id, "re-replicated")
        for chunk_id in pull[: max(budget[0], 0)]:
            budget[0] -= 1
            await self._pull(peer, chunk_id)
        return True, lacking

    async def _movable(self, idx: PlacementIndex, ids: list[str], pulled: bool = False) -> list[str]:
        """The ids that some version references and that are still placed as the index assumed: an
        id whose version committed after the index was built (fragments, chunks of another policy)
        waits for the next index, so nothing is ever copied to the owners of the wrong policy. An id
        to pull is not in our index (we lack it): it is pulled when we own it as it is placed now."""
        if not ids:
            return ids
        try:
            referenced = await self._metadata.referenced_chunks(ids)
            held = [i for i in ids if i in referenced]
            now = await self._metadata.placements(held, str(self._placement.policy)) if held else {}
        except MetadataUnavailable:
            return []
        if pulled:
            placement = self._placement.pinned()
            if placement.ring.digest != idx.ring_digest:
                return []
            return [i for i in held if self._view.local_id in holders(i, placement, now.get(i))]
        return [i for i in held if now.get(i) == idx.placed.get(i)]

    async def _push(self, peer: str, chunk_id: str, why: str) -> bool:
        try:
            data = await asyncio.to_thread(self._store.get, chunk_id)
            await self._peers.put(peer, chunk_id, data)
        except (DfsError, OSError) as exc:
            log.warning("could not copy chunk %s to %s: %s", chunk_id[:12], peer[:8], exc)
            return False
        self._metrics.repaired.inc()
        log.info("%s chunk %s to %s", why, chunk_id[:12], peer[:8])
        return True

    async def _pull(self, peer: str, chunk_id: str) -> None:
        try:
            fetched = await self._peers.get(peer, chunk_id)
            await asyncio.to_thread(self._store.put, chunk_id, fetched.data, False, fetched.xxh3)  # checks it
        except (DfsError, OSError) as exc:
            log.warning("could not fetch chunk %s from %s: %s", chunk_id[:12], peer[:8], exc)
            return
        self._metrics.repaired.inc()
        log.info("re-replicated chunk %s from %s", chunk_id[:12], peer[:8])

    async def _hand_off(self, idx: PlacementIndex, budget: list[int], may_drop: bool) -> None:
        """Moves misplaced copies to their owners; drops ours once every owner holds the chunk.

        The misplaced list belongs to the ring the index was built on; if the ring changed during
        the round (a peer left or passed its grace), this peer may own some of those chunks now,
        so the hand-off waits for the next round's index."""
        placement = self._placement.pinned()
        if placement.ring.digest != idx.ring_digest:
            return
        todo = await self._movable(idx, idx.misplaced[: budget[0] * 4])
        by_owner: dict[str, list[str]] = defaultdict(list)
        owners_of = {c: idx.owners_of_misplaced.get(c, ()) for c in todo}
        for chunk_id, owners in owners_of.items():
            if all(self._view.is_usable(o) for o in owners):
                for owner in owners:
                    by_owner[owner].append(chunk_id)
        held: dict[str, set[str]] = {}
        for owner, ids in by_owner.items():
            try:
                held[owner] = await self._peers.has_many(owner, ids)
            except (DfsError, OSError):
                held[owner] = set()
                continue
            for chunk_id in ids:
                if chunk_id not in held[owner] and budget[0] > 0:
                    budget[0] -= 1
                    if await self._push(owner, chunk_id, "handed off"):
                        held[owner].add(chunk_id)
        if not may_drop:
            return
        for chunk_id, owners in owners_of.items():
            if self._view.ring.digest != idx.ring_digest:
                return
            if owners and self._view.local_id not in owners and all(chunk_id in held.get(o, ()) for o in owners):
                await asyncio.to_thread(self._store.delete, chunk_id)
                self._metrics.handed_off.inc()
                log.info("dropped misplaced chunk %s: all %d owners hold it", chunk_id[:12], len(owners))
