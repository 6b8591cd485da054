"""Rebuilding lost fragments: every peer restores the fragments of erasure-coded chunks it owns.

A fragment has one owner (owner i of its chunk under the version's `ec:K+M` policy), so the digest
comparison between owners that restores copies (antientropy.py) has nothing to compare it with.
Instead each peer walks the erasure-coded versions in the metadata store, a page at a time, and for
every fragment it owns on today's ring but does not hold (its disk was lost, scrub quarantined a
corrupt copy, or a ring change made it the owner) it first fetches the fragment from wherever it sits
(a rebalance only moves it), else regenerates it from K other fragments, as OpenStack Swift's
reconstructor does. Each restored fragment is checked against its SHA-256 before it is stored.
A walk restarts every `pass_interval_s`; at most `batch` fragments are restored per unit of work.
"""

from __future__ import annotations

import asyncio
import logging

from peer.clock import Clock
from peer.errors import DfsError
from peer.metadata.store import AsyncMetadata, ChunkRef
from peer.metrics import PeerMetrics
from peer.ring.placement import Placement
from peer.ring.policy import InvalidPolicy, Policy
from peer.storage.chunkstore import ChunkStore
from peer.transfer.fragments import FragmentReader
from peer.transfer.peers import ClusterView

log = logging.getLogger(__name__)

_PAGE = 64  # versions read per metadata call


class FragmentRebuilder:
    name = "rebuild"

    def __init__(
        self,
        view: ClusterView,
        store: ChunkStore,
        reader: FragmentReader,
        metadata: AsyncMetadata,
        metrics: PeerMetrics,
        clock: Clock,
        *,
        placement: Placement,
        batch: int,
        pass_interval_s: float,
    ) -> None:
        self._view = view
        self._store = store
        self._reader = reader
        self._metadata = metadata
        self._metrics = metrics
        self._clock = clock
        self._placement = placement
        self._batch = batch
        self._pass_interval = pass_interval_s
        self._cursor = ""
        self._next_pass_at = 0.0

    async def work_once(self) -> bool:
        if not self._cursor and self._clock.monotonic() < self._next_pass_at:
            return False
        page = await self._metadata.coded_versions(self._cursor, _PAGE)
        if not page:
            self._cursor = ""
            self._next_pass_at = self._clock.monotonic() + self._pass_interval
            return False
        budget = self._batch
        for version in page:
            try:
                policy = Policy.parse(version.policy)
            except InvalidPolicy:
                log.error("version %s has a policy this peer cannot read: %r", version.version_id, version.policy)
                self._cursor = version.version_id
                continue
            for ref in version.chunks:
                for index in self._lacking(ref, policy):
                    if budget <= 0:
                        return True  # the cursor stays before this version: it is walked again
                    budget -= 1
                    await self._restore(ref, policy, index)
            self._cursor = version.version_id
        return True

    def _lacking(self, ref: ChunkRef, policy: Policy) -> list[int]:
        """Indexes of the fragments of `ref` that this peer owns and does not hold."""
        owners = self._placement.owners(ref.chunk_id, policy)
        local = self._view.local_id
        return [i for i, owner in enumerate(owners)
                if owner == local and i < len(ref.fragments) and not self._store.has(ref.fragments[i])]

    async def _restore(self, ref: ChunkRef, policy: Policy, index: int) -> None:
        fragment_id = ref.fragments[index]
        how = "fetched"
        try:
            try:
                data: bytes | memoryview = await self._reader.fetch(ref, policy, index)
            except DfsError:
                how = "rebuilt"
                data = await self._reader.rebuild(ref, policy, index)
            await asyncio.to_thread(self._store.put, fragment_id, data, True)
        except (DfsError, OSError) as exc:
            log.warning("could not restore fragment %d of chunk %s: %s", index, ref.chunk_id[:12], exc)
            return
        self._metrics.repaired.inc()
        log.info("%s fragment %d of chunk %s", how, index, ref.chunk_id[:12])
