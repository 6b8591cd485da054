"""Download: version record -> chunks fetched from their holders -> verified bytes, in order.

Each chunk is fetched from the local disk when this peer holds it, else in the placement's read order:
the peers the record says hold it and the owners under the version's recorded policy (usable ones
first), then any other peer. Every copy is checked against its SHA-256 before a byte of it is sent:
by this peer on a local read, by the holder on its read (which sends an XXH3-64 transfer checksum
along, checked here on arrival); a corrupt or missing copy is skipped.
When no intact copy exists the stream fails with DataLoss, never with wrong bytes. Up to `window`
chunks are fetched ahead of the one being sent, so several owners serve one download at once.
An erasure-coded chunk is read from K of its fragments and decoded (peer/transfer/fragments.py).

There is no whole-file hash here: the chunk list comes from the committed version record and every
chunk is content-addressed, so once each chunk matches its id the bytes sent are exactly the file
that was stored (the record's SHA-256 was computed over the same chunks at upload). Each piece sent
carries its chunk's id, size and file offset, so the client can check every whole chunk against its
id end to end, before it uses the chunk's bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from peer.errors import (
    ChunkCorrupt,
    ChunkUnreachable,
    DataLoss,
    DeleteMarkerFound,
    DfsError,
    InvalidRequest,
    unreachable,
)
from peer.metadata.store import AsyncMetadata, ChunkRef, FileRefSpec, VersionRecord, VersionSpec
from peer.ring.placement import Placement
from peer.ring.policy import Policy
from peer.storage.chunkstore import ChunkStore, check_received
from peer.transfer.fragments import FragmentReader
from peer.transfer.peers import ChunkPeers, ClusterView

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Piece:
    """The part of one chunk inside the requested range: all of it unless the range starts or ends
    inside the chunk."""

    chunk: ChunkRef
    start: int  # file offset of the chunk's first byte
    data: bytes | memoryview


@dataclass(frozen=True)
class ByteRange:
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


def resolve_range(size: int, offset: int, length: int) -> ByteRange:
    """length 0 means to the end; a range reaching past the end is cut at the end (as HTTP does)."""
    if offset < 0 or length < 0:
        raise InvalidRequest("offset and length must not be negative")
    if offset > size:
        raise InvalidRequest(f"offset {offset} is beyond the end of the file ({size} bytes)")
    end = size if length == 0 else min(size, offset + length)
    return ByteRange(offset, end - offset)


class DownloadService:
    def __init__(
        self,
        view: ClusterView,
        store: ChunkStore,
        peers: ChunkPeers,
        metadata: AsyncMetadata,
        *,
        placement: Placement,
        window: int,
        members_down: Callable[[], int] = lambda: 0,
    ) -> None:
        """`members_down`: how many members are dead (not departed) now. A dead member past its grace
        is off the ring and not asked, yet may hold the only other copy of a chunk (one a rebalance
        moved to it), so while any is down a chunk no asked peer holds is unreachable, not lost."""
        self._members_down = members_down
        self._view = view
        self._store = store
        self._peers = peers
        self._metadata = metadata
        self._placement = placement
        self._window = window
        self.fragments = FragmentReader(view, store, peers, placement, members_down)

    async def open(
        self, ref: FileRefSpec, version: VersionSpec, offset: int, length: int
    ) -> tuple[VersionRecord, ByteRange, AsyncIterator[Piece]]:
        record = await self._metadata.get_version(ref, version)
        if record.delete_marker:  # a marker has no content: the file reads as deleted
            raise DeleteMarkerFound(str(ref), record.version_id, by_id=version != VersionSpec(),
                                    null_version=record.null_version)
        rng = resolve_range(record.size, offset, length)
        policy = self._placement.policy_of(record.policy)  # refused here, before a byte is sent
        return record, rng, self._stream(record, policy, rng)

    async def _stream(self, record: VersionRecord, policy: Policy, rng: ByteRange) -> AsyncIterator[Piece]:
        todo = iter(_chunks_in_range(record.chunks, rng))
        ahead: deque[tuple[ChunkRef, int, asyncio.Task[bytes | memoryview]]] = deque()

        def fetch_next() -> None:
            item = next(todo, None)
            if item is not None:
                ahead.append((*item, asyncio.ensure_future(self.fetch_chunk(item[0], policy))))

        try:
            for _ in range(self._window):
                fetch_next()
            while ahead:
                ref, start, task = ahead.popleft()
                data = await task
                fetch_next()
                lo = max(rng.offset - start, 0)
                hi = min(rng.end - start, ref.size)
                yield Piece(ref, start, data if (lo, hi) == (0, ref.size) else data[lo:hi])
        finally:
            for _ref, _start, pending in ahead:
                pending.cancel()

    async def fetch_chunk(self, ref: ChunkRef, policy: Policy | None = None) -> bytes | memoryview:
        """An intact copy of one chunk from wherever one can be found; `policy` is the one its version
        was stored with (None: the cluster's)."""
        if ref.fragments:
            return await self.fragments.chunk(ref, policy or self._placement.policy)
        view = self._view
        order = self._placement.read_order(ref.chunk_id, ref.peers, policy)
        if view.local_id in order:
            order.remove(view.local_id)
            order.insert(0, view.local_id)
        failures: list[str] = []
        unanswered = 0
        for node in order:
            try:
                return await self._fetch_from(node, ref.chunk_id)
            except (DfsError, OSError) as exc:
                failures.append(f"{node[:8]}: {exc}")
                unanswered += unreachable(exc)
                log.debug("chunk %s not served by %s: %s", ref.chunk_id[:12], node[:8], exc)
        down = self._members_down()
        if unanswered or down:
            log.warning("chunk %s unreachable (%d members down): %s", ref.chunk_id, down, "; ".join(failures))
            raise ChunkUnreachable(ref.chunk_id, unanswered + down, len(order) + down)
        log.error("no intact copy of chunk %s: %s", ref.chunk_id, "; ".join(failures))
        raise DataLoss(f"no intact copy of chunk {ref.chunk_id} found on {len(order)} peers")

    async def _fetch_from(self, node: str, chunk_id: str) -> bytes | memoryview:
        if node == self._view.local_id:
            return await asyncio.to_thread(self._store.get, chunk_id)
        fetched = await self._peers.get(node, chunk_id)
        try:
            await asyncio.to_thread(check_received, chunk_id, fetched.data, fetched.xxh3)
        except ChunkCorrupt:
            log.warning("peer %s sent a corrupt copy of chunk %s; trying another", node[:8], chunk_id)
            raise ChunkCorrupt(chunk_id, f"peer {node[:8]}") from None
        return fetched.data


def _chunks_in_range(chunks: tuple[ChunkRef, ...], rng: ByteRange) -> list[tuple[ChunkRef, int]]:
    """Chunks overlapping the range, each with the file offset where it starts."""
    out: list[tuple[ChunkRef, int]] = []
    start = 0
    for ref in chunks:
        if start >= rng.end:
            break
        if start + ref.size > rng.offset and ref.size > 0:
            out.append((ref, start))
        start += ref.size
    return out
