"""Domain errors of the peer, raised deep down and mapped to a wire status exactly once at each edge.

Each edge maps them to its status with one table, keyed by class. This module imports nothing from
the rest of the peer and nothing from grpc or aiohttp, so every layer may raise these.
"""

from __future__ import annotations

from typing import ClassVar


class DfsError(Exception):
    """Base of every error the peer reports to a client or another peer."""

    kind: ClassVar[str] = "internal"


class InvalidRequest(DfsError):
    """The caller sent something malformed: a bad name, range, header order, or an oversized value."""

    kind = "invalid_request"


class NotFound(DfsError):
    kind = "not_found"


class FileNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"file not found: {ref}")
        self.ref = ref


class VersionNotFound(NotFound):
    def __init__(self, ref: str, version: str) -> None:
        super().__init__(f"version {version} of {ref} not found")
        self.ref = ref
        self.version = version


class DeleteMarkerFound(FileNotFound):
    """The version asked for is a delete marker: with the name's latest version a marker the file
    reads as absent, and a marker asked by its id has no content to read."""

    def __init__(self, ref: str, version_id: str, *, by_id: bool, null_version: bool = False) -> None:
        super().__init__(ref)
        self.args = (f"{ref}: version {version_id} is a delete marker",)
        self.version_id = version_id
        self.by_id = by_id  # asked for by its version id, rather than as the name's latest version
        self.null_version = null_version  # the marker is the name's null version


class ChunkNotFound(NotFound):
    def __init__(self, chunk_id: str) -> None:
        super().__init__(f"chunk not found: {chunk_id}")
        self.chunk_id = chunk_id


class TokenNotFound(NotFound):
    def __init__(self, token_id: str) -> None:
        super().__init__(f"token not found: {token_id}")
        self.token_id = token_id


class BucketNotFound(NotFound):
    def __init__(self, bucket: str) -> None:
        super().__init__(f"bucket not found: {bucket}")
        self.bucket = bucket


class BucketExists(DfsError):
    """A bucket of that name exists already."""

    kind = "bucket_exists"

    def __init__(self, bucket: str) -> None:
        super().__init__(f"bucket {bucket} exists already")
        self.bucket = bucket


class BucketNotEmpty(DfsError):
    """A bucket still holds files, so it cannot be deleted."""

    kind = "bucket_not_empty"

    def __init__(self, bucket: str) -> None:
        super().__init__(f"bucket {bucket} is not empty: delete every file under {bucket}/ first")
        self.bucket = bucket


class S3KeyNotFound(NotFound):
    def __init__(self, access_key_id: str) -> None:
        super().__init__(f"S3 access key not found: {access_key_id}")
        self.access_key_id = access_key_id


class UploadNotFound(NotFound):
    """No multipart upload of that id is open for that name: never created, or already completed,
    aborted or expired."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"multipart upload not found: {upload_id}")
        self.upload_id = upload_id


class InvalidPart(InvalidRequest):
    """A multipart completion names a part that was not uploaded, or gives another ETag for it."""


class InvalidPartOrder(InvalidRequest):
    """A multipart completion lists its part numbers other than in strictly ascending order."""


class PartTooSmall(InvalidRequest):
    """A part other than the last of a multipart completion is smaller than the minimum part size."""


class EncryptionKeyMismatch(DfsError):
    """A stored secret was sealed under another encryption key than the one this peer holds: the
    peers were given different cluster secrets or S3 key files. Never answered with wrong bytes."""

    kind = "encryption_key_mismatch"


class IntegrityError(DfsError):
    kind = "integrity"


class ChunkCorrupt(IntegrityError):
    """One copy of a chunk does not match its SHA-256; another copy may be intact."""

    def __init__(self, chunk_id: str, where: str) -> None:
        super().__init__(f"chunk {chunk_id} is corrupt on {where}")
        self.chunk_id = chunk_id
        self.where = where


class DataLoss(IntegrityError):
    """No intact copy of some data could be found: the caller must never get wrong bytes instead."""

    kind = "data_loss"


class InsufficientReplicas(DfsError):
    """Fewer peers than a redundancy policy spreads a chunk over: a write is refused rather than
    stored with less redundancy than asked. `policy` is the policy's canonical spelling (this module
    cannot import the policy type), so the message names what could not be met and with how many."""

    kind = "insufficient_replicas"

    def __init__(self, required: int, available: int, detail: str = "", *, policy: str = "") -> None:
        asked = f"policy {policy}" if policy else "replication"
        counted = "is" if available == 1 else "are"
        msg = f"not enough peers: {asked} needs {required} peers, {available} {counted} usable"
        super().__init__(f"{msg} ({detail})" if detail else msg)
        self.required = required
        self.available = available
        self.policy = policy


class PeerUnavailable(DfsError):
    kind = "peer_unavailable"

    def __init__(self, node_id: str, detail: str = "") -> None:
        super().__init__(f"peer {node_id} unavailable" + (f": {detail}" if detail else ""))
        self.node_id = node_id


class ChunkUnreachable(DfsError):
    """No intact copy of a chunk was found, but some of the peers that may hold one could not be
    asked (dead, partitioned away, timed out): the data may well be whole, so the caller is told to
    retry (UNAVAILABLE) rather than that it is lost (DATA_LOSS, which only answers when every
    holder asked had no intact copy)."""

    kind = "chunk_unreachable"

    def __init__(self, chunk_id: str, unreachable: int, asked: int) -> None:
        super().__init__(f"chunk {chunk_id}: no intact copy reachable, {unreachable} of {asked} peers that may "
                         "hold it could not be asked; retry when they are back")
        self.chunk_id = chunk_id


def unreachable(exc: BaseException) -> bool:
    """Whether a failed fetch says nothing about the data (the peer could not answer) rather than
    that the copy is missing or corrupt there."""
    return isinstance(exc, (PeerUnavailable, OSError))


class MetadataUnavailable(DfsError):
    kind = "metadata_unavailable"

    def __init__(self, backend: str, detail: str = "") -> None:
        super().__init__(f"metadata store {backend} unavailable" + (f": {detail}" if detail else ""))
        self.backend = backend
        self.detail = detail


class VersionConflict(DfsError):
    """Two writers raced for the same version number; retried internally before reaching a client."""

    kind = "version_conflict"


class PreconditionFailed(DfsError):
    """A conditional write found the name's latest version other than it required (create-only, or
    a given version); checked inside the commit, so nothing was written."""

    kind = "precondition_failed"


class StorageFull(DfsError):
    kind = "storage_full"


class ConfigError(DfsError):
    """A setting is missing, malformed or unsafe; the peer refuses to start."""

    kind = "config"


class GossipDecodeError(DfsError):
    """A gossip message is not msgpack, too large, or does not match the schema."""

    kind = "gossip_decode"


class GossipMismatch(DfsError):
    """A peer speaks another protocol version or runs another redundancy policy or vnode count."""

    kind = "gossip_mismatch"


class Unauthenticated(DfsError):
    """The caller proved no identity: a missing, malformed, unknown or revoked token, or a peer
    message without a valid signature. Deliberately vague toward the caller about which."""

    kind = "unauthenticated"


class PermissionDenied(DfsError):
    """The caller is known, but its role does not allow this operation."""

    kind = "permission_denied"


class TooLarge(InvalidRequest):
    """A declared or streamed size passes a configured limit; nothing was stored."""

    kind = "too_large"


class ClientTooSlow(DfsError):
    """A client sent or read nothing for longer than the idle timeout; its call was cancelled."""

    kind = "client_timeout"
