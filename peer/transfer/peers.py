"""What the transfer services need from the rest of the peer, as protocols the edges implement.

ChunkPeers moves chunks to and from other peers (rpc/peer_client.py implements it over gRPC);
ClusterView says who this peer is, which peers are on the ring and which are usable right now (node.py
implements it from membership and the ring). Where a chunk's pieces go is not asked here: a
ring.placement.Placement answers that for every service. Keeping these narrow lets upload/download
run against fakes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from peer.ring.hashring import HashRing


@dataclass(frozen=True)
class FetchedChunk:
    """What a peer sent for a chunk, unverified: the bytes, and the peer's XXH3-64 of them when it sent
    one (a holder sends it only after checking the bytes against the id on reading them from disk)."""

    data: bytes | memoryview
    xxh3: int | None = None


@dataclass(frozen=True)
class DigestAnswer:
    """A peer's reply to our bucket digests: the ids it holds in every bucket that differs."""

    ring_mismatch: bool
    differing: Mapping[int, list[str]] = field(default_factory=dict)


class ChunkWriter(Protocol):
    """The chunk puts of one upload, which may share long-lived streams to each target peer."""

    async def put(self, node_id: str, chunk_id: str, data: bytes | memoryview, xxh3: int | None = None) -> None:
        """Returns once the chunk is durable on node_id; raises PeerUnavailable or ChunkCorrupt.

        `xxh3` (chunkstore.xxh3_64 of data) may be given only by a caller that has checked data
        against chunk_id itself: the receiver then checks that instead of hashing the chunk again."""
        ...

    async def close(self) -> None:
        """After the last put: ends the streams gracefully."""
        ...

    def abort(self) -> None:
        """When the upload fails or is cancelled: ends the streams at once."""
        ...


class ChunkPeers(Protocol):
    def writer(self) -> ChunkWriter:
        """A writer for the puts of one upload; close() or abort() it when the upload ends."""
        ...

    async def put(self, node_id: str, chunk_id: str, data: bytes | memoryview, xxh3: int | None = None) -> None:
        """Returns once the chunk is durable on node_id; raises PeerUnavailable or ChunkCorrupt (on
        `xxh3`, see ChunkWriter.put)."""
        ...

    async def get(self, node_id: str, chunk_id: str) -> FetchedChunk:
        """What node_id sends for chunk_id, unverified (chunkstore.check_received checks it); raises
        ChunkNotFound or PeerUnavailable."""
        ...

    async def has_many(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]: ...

    async def delete(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]: ...

    async def compare_digests(
        self, node_id: str, from_node: str, ring_digest: str, digests: Sequence[bytes]
    ) -> DigestAnswer: ...

    async def stats(self, node_id: str, timeout_s: float) -> dict[str, Any]:
        """The peer's repair counters (PeerStats fields); raises PeerUnavailable."""
        ...


class ClusterView(Protocol):
    local_id: str

    @property
    def ring(self) -> HashRing: ...

    def is_usable(self, node_id: str) -> bool:
        """Alive as far as this peer knows: suspect, dead and left peers are routed around."""
        ...
