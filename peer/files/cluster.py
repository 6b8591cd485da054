"""What ClusterStatus reports, as plain values: the status reporter builds them, each edge renders them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MemberSnapshot:
    node_id: str
    state: str
    grpc_addr: str
    gossip_addr: str
    incarnation: int
    heartbeat: int
    chunk_count: int
    chunk_bytes: int
    on_ring: bool
    last_seen_s: float
    stats: Mapping[str, Any] | None = None  # PeerStats fields, None when the member did not answer
    zone: str = ""  # the member's failure domain as it announced it; "" = the unnamed zone


@dataclass(frozen=True)
class ClusterSnapshot:
    node_id: str
    ring_digest: str
    replicas: int
    vnodes: int
    chunk_size: int
    members: tuple[MemberSnapshot, ...]
    metadata_backend: str
    metadata_healthy: bool
    metadata_error: str
    default_policy: str = ""  # the cluster's redundancy policy, what an upload naming none is stored with
