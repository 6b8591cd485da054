"""Scrubbing: re-read every held chunk at a bounded rate, verify its SHA-256, and replace a rotten copy.

A corrupt copy is quarantined by the chunk store (kept for inspection, never served) and, when this
peer owns the chunk, restored from an intact copy elsewhere. Copies this peer does not own are left
to hinted handoff. Passes restart every `pass_interval` seconds.
"""

from __future__ import annotations

import asyncio
import logging

from peer.clock import Clock
from peer.errors import ChunkCorrupt, ChunkNotFound, DfsError
from peer.metadata.store import ChunkRef
from peer.metrics import PeerMetrics
from peer.ring.placement import Placement
from peer.storage.chunkstore import ChunkStore
from peer.transfer.download import DownloadService
from peer.transfer.peers import ClusterView
from peer.workers import RateLimiter

log = logging.getLogger(__name__)


class Scrubber:
    name = "scrub"

    def __init__(
        self,
        view: ClusterView,
        store: ChunkStore,
        downloads: DownloadService,
        metrics: PeerMetrics,
        clock: Clock,
        *,
        placement: Placement,
        bytes_per_s: float,
        pass_interval_s: float,
    ) -> None:
        self._view = view
        self._store = store
        self._downloads = downloads
        self._metrics = metrics
        self._clock = clock
        self._placement = placement
        self._limiter = RateLimiter(bytes_per_s, clock)
        self._pass_interval = pass_interval_s
        self._todo: list[str] = []
        self._next_pass_at = 0.0

    async def work_once(self) -> bool:
        if not self._todo:
            if self._clock.monotonic() < self._next_pass_at:
                return False
            self._todo = self._store.ids()
            self._metrics.scrub_pass_bytes.set(0)
            if not self._todo:
                self._next_pass_at = self._clock.monotonic() + self._pass_interval
                return False
        chunk_id = self._todo.pop()
        started = self._clock.monotonic()
        size = await self._check(chunk_id)
        self._metrics.scrub_pass_bytes.inc(size)
        self._metrics.scrubbed_bytes.inc(size)
        if not self._todo:
            self._metrics.scrub_passes.inc()
            self._next_pass_at = self._clock.monotonic() + self._pass_interval
        await self._limiter.pace(size, started)
        return bool(self._todo)

    async def _check(self, chunk_id: str) -> int:
        size = self._store.size_of(chunk_id) or 0
        try:
            await asyncio.to_thread(self._store.get, chunk_id)
        except ChunkNotFound:
            return 0
        except ChunkCorrupt:
            self._metrics.corrupt_found.inc()
            log.error("scrub: chunk %s is corrupt on this peer (quarantined)", chunk_id)
            await self._restore(chunk_id, size)
        return size

    async def _restore(self, chunk_id: str, size: int) -> None:
        if self._view.local_id not in self._placement.owners(chunk_id):
            return
        try:
            data = await self._downloads.fetch_chunk(ChunkRef(chunk_id, size))
            await asyncio.to_thread(self._store.put, chunk_id, data, True)
        except DfsError as exc:
            log.error("scrub: could not restore chunk %s from any peer: %s", chunk_id, exc)
            return
        self._metrics.repaired.inc()
        log.info("scrub: restored chunk %s from a healthy replica", chunk_id[:12])
