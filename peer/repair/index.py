"""Which held chunks this peer shares with each other owner, bucketed for digest comparison.

Pure: built from the ids held, a placement pinned to one ring (owners under the cluster's policy) and
this peer's id. For every other peer B, `shared[B]` holds the ids that both this peer and B own (so
both should hold them), split into 256 buckets by the first byte of the id. Two owners that hold the
same chunks in a bucket compute the same bucket digest, so an anti-entropy round exchanges 256 digests
per peer pair and lists ids only for the buckets that differ: its cost follows the differences, not
the cluster's chunk count.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from peer.ring.placement import Placement

BUCKETS = 256


def bucket_of(chunk_id: str) -> int:
    return int(chunk_id[:2], 16)


def bucket_digests(buckets: list[list[str]] | None) -> list[bytes]:
    """One digest per bucket over its sorted ids; an empty bucket digests to b""."""
    if buckets is None:
        return [b""] * BUCKETS
    return [hashlib.md5("".join(sorted(ids)).encode()).digest() if ids else b"" for ids in buckets]


@dataclass
class PlacementIndex:
    ring_digest: str
    store_version: int
    shared: dict[str, list[list[str]]] = field(default_factory=dict)
    misplaced: list[str] = field(default_factory=list)
    owned: int = 0

    def shared_bucket(self, peer: str, bucket: int) -> list[str]:
        buckets = self.shared.get(peer)
        return buckets[bucket] if buckets is not None else []

    def shared_count(self, peer: str) -> int:
        return sum(len(b) for b in self.shared.get(peer, ()))


def build_index(ids: Iterable[str], placement: Placement, self_id: str, store_version: int) -> PlacementIndex:
    """`placement` must be pinned (Placement.pinned): the index is valid for one ring digest only."""
    ring = placement.ring
    index = PlacementIndex(ring.digest, store_version)
    for chunk_id in ids:
        owners = placement.owners(chunk_id)
        if self_id not in owners:
            index.misplaced.append(chunk_id)
            continue
        index.owned += 1
        bucket = bucket_of(chunk_id)
        for peer in owners:
            if peer != self_id:
                buckets = index.shared.get(peer)
                if buckets is None:
                    buckets = index.shared[peer] = [[] for _ in range(BUCKETS)]
                buckets[bucket].append(chunk_id)
    return index
