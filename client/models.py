"""Plain, frozen result types of the SDK and their conversion from the wire messages.

Callers (the CLI, scripts, integration tests) only ever see these, never protobuf messages, so the
wire format can evolve without breaking them; `to_dict()` gives the JSON the CLI prints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from proto import dfs_pb2


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, nested results included."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class ChunkPlacement(_Serializable):
    """One chunk of a version, in file order, and the node ids holding a durable copy of it."""

    chunk_id: str
    size: int
    peers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VersionInfo(_Serializable):
    """One version of a file; `chunks` is only filled by stat and upload."""

    file_id: str
    version_id: str
    version: int
    name: str
    size: int
    sha256: str
    chunk_count: int = 0
    content_type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    """Seconds since the Unix epoch."""
    latest: bool = False
    chunks: list[ChunkPlacement] = field(default_factory=list)


@dataclass(frozen=True)
class UploadResult(_Serializable):
    version: VersionInfo
    peers: list[str] = field(default_factory=list)
    """Every node id holding at least one chunk of the new version."""


@dataclass(frozen=True)
class PeerStats(_Serializable):
    """A member's own self-healing counters, as it reported them to the answering peer."""

    chunk_count: int = 0
    """Chunks held on the member's disk."""
    chunk_bytes: int = 0
    under_replicated: int = 0
    """Chunks the member owns whose other owners lack them or are down."""
    misplaced: int = 0
    """Chunks the member holds but does not own (hinted copies, copies left by a ring change)."""
    repaired: int = 0
    """Copies pushed or pulled to restore placement since the member started."""
    handed_off: int = 0
    """Misplaced copies handed to their owners and dropped since start."""
    scrubbed_bytes: int = 0
    """Bytes verified so far in the current scrub pass."""
    scrub_passes: int = 0
    """Completed scrub passes since start."""
    corrupt_found: int = 0
    """Corrupt copies found and quarantined since start."""
    gc_deleted: int = 0
    """Unreferenced chunks deleted by garbage collection since start."""
    last_sync_s: float = -1.0
    """Seconds since the member's last completed anti-entropy round; -1 when it has not completed one."""


@dataclass(frozen=True)
class MemberStatus(_Serializable):
    """One cluster member as the answering peer sees it."""

    node_id: str
    state: str
    """alive, suspect, dead or left."""
    grpc_addr: str = ""
    gossip_addr: str = ""
    incarnation: int = 0
    heartbeat: int = 0
    chunk_count: int = 0
    chunk_bytes: int = 0
    on_ring: bool = False
    last_seen_s: float = 0.0
    """Seconds since the answering peer last heard news of this member."""
    stats: PeerStats | None = None
    """The member's repair counters; None when it did not answer (dead, or too slow)."""


@dataclass(frozen=True)
class ClusterStatus(_Serializable):
    node_id: str
    """The peer that answered."""
    ring_digest: str
    replicas: int
    vnodes: int = 0
    chunk_size: int = 0
    members: list[MemberStatus] = field(default_factory=list)
    metadata_backend: str = ""
    metadata_healthy: bool = False
    metadata_error: str = ""


TOKEN_ROLES = ("read", "write", "admin")
"""Roles a token can have, weakest first; the peer decides what each may do (only admin manages tokens)."""


@dataclass(frozen=True)
class TokenInfo(_Serializable):
    """The public half of an access token; the secret is only ever returned once, by create_token."""

    token_id: str
    """The token's public id (16 hex characters); empty from whoami on a peer running without auth."""
    role: str
    """read, write or admin."""
    name: str = ""
    created_at: float = 0.0
    """Seconds since the Unix epoch."""
    revoked_at: float | None = None
    """Seconds since the Unix epoch; None while the token is valid."""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def version_from_proto(msg: dfs_pb2.VersionInfo) -> VersionInfo:
    return VersionInfo(
        file_id=msg.file_id,
        version_id=msg.version_id,
        version=msg.version,
        name=msg.name,
        size=msg.size,
        sha256=msg.sha256,
        chunk_count=msg.chunk_count,
        content_type=msg.content_type,
        metadata=dict(msg.metadata),
        created_at=msg.created_at,
        latest=msg.latest,
        chunks=[ChunkPlacement(c.chunk_id, c.size, list(c.peers)) for c in msg.chunks],
    )


def upload_from_proto(msg: dfs_pb2.UploadReply) -> UploadResult:
    return UploadResult(version=version_from_proto(msg.version), peers=list(msg.peers))


def stats_from_proto(msg: dfs_pb2.PeerStats) -> PeerStats:
    return PeerStats(
        chunk_count=msg.chunk_count,
        chunk_bytes=msg.chunk_bytes,
        under_replicated=msg.under_replicated,
        misplaced=msg.misplaced,
        repaired=msg.repaired,
        handed_off=msg.handed_off,
        scrubbed_bytes=msg.scrubbed_bytes,
        scrub_passes=msg.scrub_passes,
        corrupt_found=msg.corrupt_found,
        gc_deleted=msg.gc_deleted,
        last_sync_s=msg.last_sync_s,
    )


def status_from_proto(msg: dfs_pb2.ClusterStatusReply) -> ClusterStatus:
    members = [
        MemberStatus(
            node_id=m.node_id,
            state=m.state,
            grpc_addr=m.grpc_addr,
            gossip_addr=m.gossip_addr,
            incarnation=m.incarnation,
            heartbeat=m.heartbeat,
            chunk_count=m.chunk_count,
            chunk_bytes=m.chunk_bytes,
            on_ring=m.on_ring,
            last_seen_s=m.last_seen_s,
            stats=stats_from_proto(m.stats) if m.HasField("stats") else None,
        )
        for m in msg.members
    ]
    return ClusterStatus(
        node_id=msg.node_id,
        ring_digest=msg.ring_digest,
        replicas=msg.replicas,
        vnodes=msg.vnodes,
        chunk_size=msg.chunk_size,
        members=members,
        metadata_backend=msg.metadata_backend,
        metadata_healthy=msg.metadata_healthy,
        metadata_error=msg.metadata_error,
    )


def token_from_proto(msg: dfs_pb2.TokenInfo) -> TokenInfo:
    return TokenInfo(
        token_id=msg.token_id,
        role=msg.role,
        name=msg.name,
        created_at=msg.created_at,
        revoked_at=msg.revoked_at or None,  # 0 on the wire: not revoked
    )
