"""Which held chunks this peer shares with each other owner, bucketed for digest comparison.

Pure: built from the ids held, how each is placed (`Placed`, from the metadata store: the chunks of
versions under another policy than the cluster's, and erasure-coded fragments; anything else is a
chunk under the cluster's policy), a placement pinned to one ring, and this peer's id. A fragment
has exactly one owner, owner i of its chunk, so it is shared with nobody: it is never compared by
digest, only handed to its owner when it sits elsewhere (fragments an owner lacks are rebuilt by
repair/fragments.py). For every other peer B, `shared[B]` holds the ids that both this peer and B own (so
both should hold them), split into 256 buckets by the first byte of the id. Two owners that hold the
same chunks in a bucket compute the same bucket digest, so an anti-entropy round exchanges 256 digests
per peer pair and lists ids only for the buckets that differ: its cost follows the differences, not
the cluster's chunk count.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from peer.metadata.store import Placed
from peer.ring.placement import Placement
from peer.ring.policy import Policy

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
    owners_of_misplaced: dict[str, tuple[str, ...]] = field(default_factory=dict)
    placed: Mapping[str, tuple[Placed, ...]] = field(default_factory=dict)
    """How the ids were placed when the index was built (absent: under the cluster's policy)."""

    def shared_bucket(self, peer: str, bucket: int) -> list[str]:
        buckets = self.shared.get(peer)
        return buckets[bucket] if buckets is not None else []

    def shared_count(self, peer: str) -> int:
        return sum(len(b) for b in self.shared.get(peer, ()))


def holders(chunk_id: str, placement: Placement, placed: tuple[Placed, ...] | None) -> tuple[str, ...]:
    """The peers that should hold stored id `chunk_id`: under the cluster's policy when it is placed
    no other way, else the owners of every way it is placed, each once."""
    if not placed:
        return placement.owners(chunk_id)
    out: dict[str, None] = {}
    for way in placed:
        policy = Policy.parse(way.policy)
        if not way.parent:
            out.update(dict.fromkeys(placement.owners(chunk_id, policy)))
            continue
        owners = placement.owners(way.parent, policy)
        if 0 <= way.index < len(owners):
            out[owners[way.index]] = None
    return tuple(out)


def build_index(
    ids: Iterable[str], placement: Placement, self_id: str, store_version: int,
    placed: Mapping[str, tuple[Placed, ...]] | None = None,
) -> PlacementIndex:
    """`placement` must be pinned (Placement.pinned): the index is valid for one ring digest only."""
    ring = placement.ring
    placed = placed or {}
    index = PlacementIndex(ring.digest, store_version, placed=placed)
    for chunk_id in ids:
        owners = holders(chunk_id, placement, placed.get(chunk_id))
        if self_id not in owners:
            index.misplaced.append(chunk_id)
            index.owners_of_misplaced[chunk_id] = owners
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
