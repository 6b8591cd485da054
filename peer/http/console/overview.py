"""The cluster page's document: the status snapshot, each peer's share of the ring, and the totals.

Pure functions of their inputs. A peer's share of the ring is the part of the 64-bit key space whose
first owner it is: every virtual node owns the arc from the point before it (exclusive) to its own
point (inclusive), as `HashRing.owners` resolves keys. A peer's redundancy is the share of the chunks
it holds as an owner whose other owners hold theirs too (`redundancy`); the cluster's is the same
ratio over the sums of every peer that answered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from peer.files.cluster import ClusterSnapshot
from peer.ring.hashring import HashRing, key_position

__all__ = ["RingShares", "cluster_doc", "redundancy", "ring_shares"]

KEY_SPACE = 1 << 64
TOTALS = ("chunk_count", "chunk_bytes", "under_replicated", "misplaced", "repaired", "handed_off",
          "corrupt_found", "gc_deleted", "scrub_passes")
WORKER_FIELDS = ("name", "state", "runs", "errors", "last_error", "last_error_s", "last_run_s")


@dataclass(frozen=True)
class RingShares:
    digest: str
    share: dict[str, float]  # node id -> fraction of the key space it owns first
    points: dict[str, int]  # node id -> virtual nodes on the ring
    arcs: tuple[tuple[float, float, str], ...]  # (start, end) fractions of the key space and their owner


def ring_shares(ring: HashRing) -> RingShares:
    """Each node's share of `ring`, and its arcs with neighbouring arcs of one owner merged."""
    points = sorted((key_position(f"{node}#{i}"), node) for node in ring.nodes for i in range(ring.vnodes))
    share = dict.fromkeys(ring.nodes, 0.0)
    counts = dict.fromkeys(ring.nodes, 0)
    arcs: list[tuple[float, float, str]] = []
    if not points:
        return RingShares(ring.digest, share, counts, ())
    previous = points[-1][0] - KEY_SPACE  # the last point's arc wraps round to the first
    for position, node in points:
        share[node] += (position - previous) / KEY_SPACE
        counts[node] += 1
        start, end = max(previous, 0) / KEY_SPACE, position / KEY_SPACE
        if arcs and arcs[-1][2] == node:
            arcs[-1] = (arcs[-1][0], end, node)
        else:
            arcs.append((start, end, node))
        previous = position
    # The wrapped part, after the last point, belongs to the first point's owner.
    tail_start = points[-1][0] / KEY_SPACE
    if tail_start < 1.0:
        arcs.append((tail_start, 1.0, points[0][1]))
    return RingShares(ring.digest, share, counts, tuple(arcs))


def redundancy(chunk_count: int, under_replicated: int, misplaced: int = 0) -> float:
    """The fraction (0..1) of the chunks a peer holds as an owner that have full redundancy: every
    other owner holds its copy too. A peer holds `chunk_count` chunks, of which `misplaced` it does
    not own (hinted copies, copies left by a ring change), and `under_replicated` of the owned ones
    lack a copy elsewhere. 1.0 when nothing is under-replicated, an empty peer included. The counts
    come from different moments (the store's now, the last anti-entropy round's), hence the clamps."""
    if under_replicated <= 0:
        return 1.0
    owned = chunk_count - max(misplaced, 0)
    if owned <= 0:
        return 0.0
    return max(0.0, (owned - under_replicated) / owned)


def _count(stats: Mapping[str, Any], name: str) -> int:
    value = stats.get(name)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _workers(entries: object) -> list[dict[str, Any]] | None:
    """A peer's worker reports as plain values, whether they came as dicts (this peer) or as the
    repeated messages of another peer's stats answer."""
    if not isinstance(entries, Iterable) or isinstance(entries, str | bytes):
        return None
    plain = []
    for entry in entries:
        if isinstance(entry, Mapping):
            fields = dict(entry)
        else:
            fields = {name: getattr(entry, name) for name in WORKER_FIELDS if hasattr(entry, name)}
        plain.append({k: v for k, v in fields.items() if _scalar(v)})
    return plain


def cluster_doc(snap: ClusterSnapshot, shares: RingShares) -> dict[str, Any]:
    """What GET /console/api/cluster answers."""
    totals = dict.fromkeys(TOTALS, 0)
    members = []
    for m in snap.members:
        stats = dict(m.stats) if m.stats is not None else None
        if stats is not None:
            for name in TOTALS:
                totals[name] += _count(stats, name)
        members.append({
            "node_id": m.node_id,
            "local": m.node_id == snap.node_id,
            "state": m.state,
            "zone": getattr(m, "zone", "") or "",
            "grpc_addr": m.grpc_addr,
            "gossip_addr": m.gossip_addr,
            "last_seen_s": round(m.last_seen_s, 3),
            "incarnation": m.incarnation,
            "on_ring": m.on_ring,
            "ring_share": shares.share.get(m.node_id, 0.0),
            "ring_vnodes": shares.points.get(m.node_id, 0),
            "chunk_count": m.chunk_count,
            "chunk_bytes": m.chunk_bytes,
            "redundancy": redundancy(_count(stats, "chunk_count"), _count(stats, "under_replicated"),
                                     _count(stats, "misplaced")) if stats is not None else None,
            "stats": {k: v for k, v in stats.items() if _scalar(v)} if stats is not None else None,
            "workers": _workers(stats.get("workers")) if stats is not None else None,
        })
    states: dict[str, int] = {}
    for m in snap.members:
        states[m.state] = states.get(m.state, 0) + 1
    return {
        "node_id": snap.node_id,
        "members": members,
        "states": states,
        "ring": {
            "digest": snap.ring_digest,
            "replicas": snap.replicas,
            "vnodes": snap.vnodes,
            "arcs": [[round(a, 6), round(b, 6), node] for a, b, node in shares.arcs],
        },
        "chunk_size": snap.chunk_size,
        "totals": totals,
        "redundancy": redundancy(totals["chunk_count"], totals["under_replicated"], totals["misplaced"]),
        "zones": sorted({z for z in (getattr(m, "zone", "") or "" for m in snap.members) if z}),
        "metadata": {"backend": snap.metadata_backend, "healthy": snap.metadata_healthy,
                     "error": snap.metadata_error},
    }
