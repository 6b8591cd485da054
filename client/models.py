"""Plain, frozen result types of the SDK and their conversion from the wire messages.

Callers (the CLI, scripts, integration tests) only ever see these, never protobuf messages, so the
wire format can evolve without breaking them; `to_dict()` gives the JSON the CLI prints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.protobuf.descriptor import FieldDescriptor

from proto import dfs_pb2


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, nested results included."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class ChunkPlacement(_Serializable):
    """One chunk of a version, in file order, and the node ids holding a durable copy of it. An
    erasure-coded chunk is stored as fragments: `peers[i]` holds `fragments[i]` (its SHA-256)."""

    chunk_id: str
    size: int
    peers: list[str] = field(default_factory=list)
    fragments: list[str] = field(default_factory=list)


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
    policy: str = ""
    """Redundancy policy the version was stored with, e.g. "rep:2"; "" when its record predates
    policies (the cluster's policy applies)."""
    delete_marker: bool = False
    """A delete marker (an S3 delete in a versioned bucket): no content; while it is the latest
    version the file reads as not found."""


@dataclass(frozen=True)
class UploadResult(_Serializable):
    version: VersionInfo
    peers: list[str] = field(default_factory=list)
    """Every node id holding at least one chunk of the new version."""


_SCALARS: dict[int, type] = {
    FieldDescriptor.CPPTYPE_INT32: int,
    FieldDescriptor.CPPTYPE_INT64: int,
    FieldDescriptor.CPPTYPE_UINT32: int,
    FieldDescriptor.CPPTYPE_UINT64: int,
    FieldDescriptor.CPPTYPE_ENUM: int,
    FieldDescriptor.CPPTYPE_DOUBLE: float,
    FieldDescriptor.CPPTYPE_FLOAT: float,
    FieldDescriptor.CPPTYPE_BOOL: bool,
    FieldDescriptor.CPPTYPE_STRING: str,
}
_STATS_NOT_COPIED = frozenset({"node_id"})  # MemberStatus.node_id already names the member
_STATS_DEFAULTS: dict[str, Any] = {"last_sync_s": -1.0}  # the wire's 0 would read "synced just now"


def _stats_fields() -> list[tuple[str, type, Any]]:
    """The scalar fields of the PeerStats message, in wire order, as dataclass fields.

    The message is the one list of statistics the client knows: a statistic the peer adds reaches
    the SDK, `to_dict()` and `dfs --json status` without a change here. Repeated and message fields
    are not counters and need models of their own, so they are left out."""
    fields: list[tuple[str, type, Any]] = []
    for f in dfs_pb2.PeerStats.DESCRIPTOR.fields:
        kind = _SCALARS.get(f.cpp_type)
        if kind is None or f.is_repeated or f.name in _STATS_NOT_COPIED:
            continue
        fields.append((f.name, kind, field(default=_STATS_DEFAULTS.get(f.name, f.default_value))))
    return fields


_STATS_FIELDS = _stats_fields()
_STATS_DOC = """A member's own self-healing counters, as it reported them to the answering peer.

Attributes are the scalar fields of the PeerStats message (proto/dfs.proto documents each), for
example chunk_count, under_replicated, misplaced, repaired, scrub_passes and last_sync_s (-1 when
the member has not completed an anti-entropy round)."""

if TYPE_CHECKING:

    class PeerStats(_Serializable):
        """Typed as an open record: its attributes are only known once the wire message is loaded."""

        def __init__(self, **fields: Any) -> None: ...

        def __getattr__(self, name: str) -> Any: ...

else:
    PeerStats = dataclasses.make_dataclass(
        "PeerStats", _STATS_FIELDS, bases=(_Serializable,), frozen=True,
        namespace={"__doc__": _STATS_DOC, "__module__": __name__},
    )  # fmt: skip


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
    workers: list[WorkerStatus] = field(default_factory=list)
    """The member's background workers; empty when it did not answer."""
    zone: str = ""
    """The member's failure domain (its DFS_ZONE); "" when it names none."""


@dataclass(frozen=True)
class WorkerStatus(_Serializable):
    """One background worker of a member (gossip, housekeeping, anti-entropy, scrub, gc), as it reported it."""

    name: str
    state: str
    """busy (working, or more work is waiting), idle (waiting for its interval) or stopped."""
    runs: int = 0
    """Units of work done since the member started."""
    errors: int = 0
    """Units that failed; the worker logs each and goes on."""
    last_error: str = ""
    last_error_s: float = -1.0
    """Seconds since the latest failure; -1 when there was none."""
    last_run_s: float = -1.0
    """Seconds since the latest unit of work ended; -1 before the first."""


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
    default_policy: str = ""
    """The cluster's redundancy policy, e.g. "rep:2": what an upload naming none (in a bucket without
    one) is stored with; "" from a peer that predates the field (it is rep:`replicas` then)."""


@dataclass(frozen=True)
class BucketInfo(_Serializable):
    """An S3 bucket: the name space of the files named `name/...`."""

    name: str
    created_at: float = 0.0
    """Seconds since the Unix epoch."""
    versioning: str = ""
    """Enabled, Suspended, or "" when versioning was never configured."""
    policy: str = ""
    """The default redundancy policy of its uploads; "" when it has none (the cluster's applies)."""


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


@dataclass(frozen=True)
class S3KeyInfo(_Serializable):
    """The public part of an S3 access key; its secret is only ever returned once, by create_s3_key."""

    access_key_id: str
    """20 upper-case letters and digits, starting "DK"; S3 clients send it with every signed request."""
    role: str
    """read, write or admin, as for tokens."""
    name: str = ""
    created_at: float = 0.0
    """Seconds since the Unix epoch."""
    revoked_at: float | None = None
    """Seconds since the Unix epoch; None while the key is valid."""

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
        chunks=[ChunkPlacement(c.chunk_id, c.size, list(c.peers), list(c.fragments)) for c in msg.chunks],
        policy=msg.policy,
        delete_marker=msg.delete_marker,
    )


def upload_from_proto(msg: dfs_pb2.UploadReply) -> UploadResult:
    return UploadResult(version=version_from_proto(msg.version), peers=list(msg.peers))


def stats_from_proto(msg: dfs_pb2.PeerStats) -> PeerStats:
    return PeerStats(**{name: getattr(msg, name) for name, _, _ in _STATS_FIELDS})


def worker_from_proto(msg: dfs_pb2.WorkerState) -> WorkerStatus:
    return WorkerStatus(
        name=msg.name,
        state=msg.state,
        runs=msg.runs,
        errors=msg.errors,
        last_error=msg.last_error,
        last_error_s=msg.last_error_s,
        last_run_s=msg.last_run_s,
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
            workers=[worker_from_proto(w) for w in m.stats.workers],
            zone=m.zone,
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
        default_policy=msg.default_policy,
    )


def bucket_from_proto(msg: dfs_pb2.BucketInfo) -> BucketInfo:
    return BucketInfo(name=msg.name, created_at=msg.created_at, versioning=msg.versioning, policy=msg.policy)


def token_from_proto(msg: dfs_pb2.TokenInfo) -> TokenInfo:
    return TokenInfo(
        token_id=msg.token_id,
        role=msg.role,
        name=msg.name,
        created_at=msg.created_at,
        revoked_at=msg.revoked_at or None,  # 0 on the wire: not revoked
    )


def s3_key_from_proto(msg: dfs_pb2.S3KeyInfo) -> S3KeyInfo:
    return S3KeyInfo(
        access_key_id=msg.access_key_id,
        role=msg.role,
        name=msg.name,
        created_at=msg.created_at,
        revoked_at=msg.revoked_at or None,  # 0 on the wire: not revoked
    )
