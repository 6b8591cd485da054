"""Reading erasure-coded chunks: fetch fragments from their holders, verify each, decode, verify the chunk.

A coded chunk is read from the first K fragments that arrive intact. The K data fragments are asked
for first, in parallel (joining them needs no arithmetic); each fragment that cannot be had (holder
down, fragment missing, or its bytes not matching its SHA-256) is replaced by the next parity
fragment, so up to M fragments may be lost or corrupt and the chunk is still served. The decoded
chunk is checked against its own SHA-256, its id, before anyone sees a byte of it. The rebuilder of
lost fragments (repair) uses the same reader to regenerate one fragment from K others.

Where fragment i is looked for: the peer recorded as holding it when the version was written, then
its owner on today's ring (a rebalance may have moved it), then this peer's own disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence

from peer.erasure import ErasureCode, erasure_code
from peer.errors import ChunkCorrupt, ChunkUnreachable, DataLoss, DfsError, unreachable
from peer.metadata.store import ChunkRef
from peer.ring.placement import Placement
from peer.ring.policy import Policy
from peer.storage.chunkstore import ChunkStore, check_received, sha256_hex
from peer.transfer.peers import ChunkPeers, ClusterView

log = logging.getLogger(__name__)

__all__ = ["FragmentReader"]


class FragmentReader:
    def __init__(self, view: ClusterView, store: ChunkStore, peers: ChunkPeers, placement: Placement,
                 members_down: Callable[[], int] = lambda: 0) -> None:
        """`members_down`: as for DownloadService, a dead member may hold fragments nobody asked it for."""
        self._members_down = members_down
        self._view = view
        self._store = store
        self._peers = peers
        self._placement = placement

    async def chunk(self, ref: ChunkRef, policy: Policy) -> bytes:
        """The chunk's bytes, verified against its id; DataLoss when fewer than K fragments are intact."""
        fragments = await self.gather(ref, policy, range(policy.width))
        code = erasure_code(policy.data, policy.parity)
        return await asyncio.to_thread(_decode_checked, code, list(fragments.values()), ref.chunk_id)

    async def rebuild(self, ref: ChunkRef, policy: Policy, index: int) -> bytes:
        """Fragment `index` regenerated from K others, verified against its recorded id."""
        others = [i for i in range(policy.width) if i != index]
        fragments = await self.gather(ref, policy, others)
        code = erasure_code(policy.data, policy.parity)
        return await asyncio.to_thread(_rebuild_checked, code, list(fragments.values()), index, ref.fragments[index])

    async def fetch(self, ref: ChunkRef, policy: Policy, index: int) -> bytes | memoryview:
        """Fragment `index` as stored by one of its likely holders, verified; raises DfsError if none has it."""
        failures: list[str] = []
        unanswered = 0
        for node in self._holders(ref, policy, index):
            try:
                return await self._fetch_from(node, ref.fragments[index])
            except (DfsError, OSError) as exc:
                failures.append(f"{node[:8]}: {exc}")
                unanswered += unreachable(exc)
        if unanswered:
            raise ChunkUnreachable(ref.fragments[index], unanswered, len(failures))
        raise DataLoss(f"fragment {index} of chunk {ref.chunk_id[:12]} not found: " + "; ".join(failures))

    async def gather(self, ref: ChunkRef, policy: Policy, indexes: Sequence[int]) -> dict[int, bytes | memoryview]:
        """K intact fragments among `indexes`, asked for K at a time in order, each failure replaced
        by the next index; raises DataLoss when the indexes run out first."""
        if len(ref.fragments) != policy.width:
            raise DataLoss(f"chunk {ref.chunk_id[:12]} records {len(ref.fragments)} fragments, {policy} needs "
                           f"{policy.width}")
        todo = iter(indexes)
        running: dict[asyncio.Task[bytes | memoryview], int] = {}
        got: dict[int, bytes | memoryview] = {}
        failures: list[str] = []
        unanswered = 0

        def start_next() -> None:
            index = next(todo, None)
            if index is not None:
                running[asyncio.ensure_future(self.fetch(ref, policy, index))] = index

        for _ in range(policy.data):
            start_next()
        try:
            while running and len(got) < policy.data:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    index = running.pop(task)
                    exc = task.exception()
                    if exc is None:
                        got[index] = task.result()
                    else:
                        failures.append(str(exc))
                        unanswered += isinstance(exc, ChunkUnreachable)
                        start_next()
        finally:
            for task in running:
                task.cancel()
        if len(got) < policy.data:
            down = self._members_down()
            if (unanswered or down) and len(got) + unanswered + down >= policy.data:  # the missing may be whole
                log.warning("chunk %s: %d of %d fragments needed reachable (%d members down): %s", ref.chunk_id,
                            len(got), policy.data, down, "; ".join(failures))
                raise ChunkUnreachable(ref.chunk_id, unanswered + down, policy.width)
            log.error("chunk %s: %d of %d fragments needed are intact: %s", ref.chunk_id, len(got), policy.data,
                      "; ".join(failures))
            raise DataLoss(f"no intact copy of chunk {ref.chunk_id}: {len(got)} of the {policy.data} fragments "
                           f"needed are intact")
        return got

    def _holders(self, ref: ChunkRef, policy: Policy, index: int) -> Iterator[str]:
        owners = self._placement.owners(ref.chunk_id, policy)
        candidates = dict.fromkeys(node for node in (
            ref.peers[index] if index < len(ref.peers) else None,
            owners[index] if index < len(owners) else None,
            self._view.local_id,
        ) if node)
        usable = [n for n in candidates if n == self._view.local_id or self._view.is_usable(n)]
        yield from usable
        yield from (n for n in candidates if n not in usable)
        # Last, and only when those failed, the rest of the ring: a fragment a rebalance moved, or one
        # that lives on a stand-in since an owner was down, is found where neither the record nor the
        # current ring points.
        yield from (n for n in self._view.ring.spread(ref.chunk_id) if n not in candidates)

    async def _fetch_from(self, node: str, fragment_id: str) -> bytes | memoryview:
        if node == self._view.local_id:
            return await asyncio.to_thread(self._store.get, fragment_id)
        fetched = await self._peers.get(node, fragment_id)
        try:
            await asyncio.to_thread(check_received, fragment_id, fetched.data, fetched.xxh3)
        except ChunkCorrupt:
            log.warning("peer %s sent a corrupt fragment %s; trying another", node[:8], fragment_id[:12])
            raise
        return fetched.data


def _decode_checked(code: ErasureCode, fragments: list[bytes | memoryview], chunk_id: str) -> bytes:
    data = code.decode(fragments)
    if sha256_hex(data) != chunk_id:
        raise DataLoss(f"chunk {chunk_id} decoded from verified fragments does not match its id")
    return data


def _rebuild_checked(code: ErasureCode, fragments: list[bytes | memoryview], index: int, fragment_id: str) -> bytes:
    data = code.rebuild(fragments, index)
    if sha256_hex(data) != fragment_id:
        raise DataLoss(f"fragment {index} rebuilt does not match its id {fragment_id[:12]}")
    return data
