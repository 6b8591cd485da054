"""Garbage collection: delete chunks that no version references any more, after a grace period.

A chunk goes only if the metadata store says no live version references it AND nothing wrote or
re-used it for `grace_s` (its file's modification time; re-putting a held chunk renews it). An
upload writes its chunks before it commits its version, so an upload that finishes within the grace
period can never lose a chunk to GC, whether the chunk is new or shared with an earlier version.
The check and the delete happen under the chunk store's lock, so a concurrent re-use wins.

A chunk that a part of an open S3 multipart upload references counts as referenced
(`referenced_chunks` answers for versions and parts alike). Each pass begins by expiring the
multipart uploads no part reached for `multipart_expiry_s`: their part records go, so their chunks
are unreferenced and collected like any other once the grace has passed.
"""

from __future__ import annotations

import asyncio
import logging

from peer.clock import Clock
from peer.errors import MetadataUnavailable
from peer.metadata.store import AsyncMetadata
from peer.metrics import PeerMetrics
from peer.storage.chunkstore import ChunkStore

log = logging.getLogger(__name__)

BATCH = 1000


class GarbageCollector:
    name = "gc"

    def __init__(
        self, store: ChunkStore, metadata: AsyncMetadata, metrics: PeerMetrics, clock: Clock, *, grace_s: float,
        multipart_expiry_s: float | None = None,
    ) -> None:
        """`multipart_expiry_s`: how long a multipart upload may go untouched (None: never expired here)."""
        self._store = store
        self._metadata = metadata
        self._metrics = metrics
        self._clock = clock
        self._grace = grace_s
        self._multipart_expiry = multipart_expiry_s
        self._todo: list[str] = []

    async def work_once(self) -> bool:
        if not self._todo:
            await self._expire_uploads()
            self._todo = self._store.ids()
        batch, self._todo = self._todo[:BATCH], self._todo[BATCH:]
        if not batch:
            return False
        try:
            referenced = await self._metadata.referenced_chunks(batch)
        except MetadataUnavailable as exc:
            log.info("gc paused: %s", exc)
            self._todo = []
            return False
        cutoff = self._clock.wall() - self._grace
        garbage = [c for c in batch if c not in referenced]
        deleted = await asyncio.to_thread(lambda: [c for c in garbage if self._store.delete_if_stale(c, cutoff)])
        for chunk_id in deleted:
            log.info("gc: deleted unreferenced chunk %s", chunk_id[:12])
        self._metrics.gc_deleted.inc(len(deleted))
        return bool(self._todo)

    async def _expire_uploads(self) -> None:
        """Aborts the multipart uploads untouched for the expiry (every peer may; each upload goes once)."""
        if self._multipart_expiry is None:
            return
        cutoff = self._clock.wall() - self._multipart_expiry
        try:
            while expired := await self._metadata.expire_uploads(cutoff, BATCH):
                for upload in expired:
                    log.info("gc: expired multipart upload %s of %s, untouched since %.0f", upload.upload_id,
                             upload.name, upload.touched_at)
                if len(expired) < BATCH:
                    break
        except MetadataUnavailable as exc:
            log.info("gc: multipart expiry paused: %s", exc)
