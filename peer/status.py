"""ClusterStatus as this peer sees it: membership, the ring, metadata health, and each live
member's own repair counters (asked over the internal service, in parallel, with a short timeout)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from peer.clock import Clock
from peer.errors import DfsError
from peer.files.cluster import ClusterSnapshot, MemberSnapshot
from peer.membership.state import Member, MembershipView, MemberState
from peer.metrics import PeerMetrics
from peer.ring.policy import Policy
from peer.transfer.peers import ChunkPeers, ClusterView

STATS_TIMEOUT_S = 0.5


def stats_dict(metrics: PeerMetrics, now: float) -> dict[str, Any]:
    """The PeerStats fields of this peer, read from its registry in one collection, so the status
    and the `/metrics` exposition never disagree; `now` is Unix time."""
    samples = metrics.samples()
    return {f.field: f.read(samples, now) for f in metrics.wire}


class StatusReporter:
    def __init__(
        self,
        view: MembershipView,
        cluster: ClusterView,
        peers: ChunkPeers,
        local_stats: Callable[[], dict[str, Any]],
        clock: Clock,
        *,
        policy: Policy,
        vnodes: int,
        chunk_size: int,
        metadata_backend: str,
        metadata_health: Callable[[], tuple[bool, str]],
    ) -> None:
        self._view = view
        self._cluster = cluster
        self._peers = peers
        self._local_stats = local_stats
        self._clock = clock
        self._policy = policy
        self._vnodes = vnodes
        self._chunk_size = chunk_size
        self._backend = metadata_backend
        self._health = metadata_health

    async def snapshot(self) -> ClusterSnapshot:
        members = sorted(self._view.members(), key=lambda m: m.node_id)
        stats = await asyncio.gather(*(self._stats_of(m) for m in members))
        now = self._clock.monotonic()
        on_ring = set(self._cluster.ring.nodes)
        local = self._cluster.local_id
        healthy, error = self._health()
        return ClusterSnapshot(
            node_id=local, ring_digest=self._cluster.ring.digest, replicas=self._policy.width, vnodes=self._vnodes,
            chunk_size=self._chunk_size, metadata_backend=self._backend, metadata_healthy=healthy,
            metadata_error=error, default_policy=str(self._policy),
            members=tuple(
                MemberSnapshot(
                    node_id=m.node_id, state=m.state.value, grpc_addr=m.grpc_addr, gossip_addr=m.gossip_addr,
                    incarnation=m.incarnation, heartbeat=m.heartbeat, chunk_count=m.chunk_count,
                    chunk_bytes=m.chunk_bytes, on_ring=m.node_id in on_ring,
                    last_seen_s=0.0 if m.node_id == local else max(0.0, now - m.last_seen), stats=s,
                    zone=m.zone,
                )
                for m, s in zip(members, stats, strict=True)
            ),
        )

    async def _stats_of(self, member: Member) -> dict[str, Any] | None:
        if member.node_id == self._cluster.local_id:
            return self._local_stats()
        if member.state != MemberState.ALIVE:
            return None
        try:
            return await self._peers.stats(member.node_id, STATS_TIMEOUT_S)
        except (DfsError, OSError):
            return None
