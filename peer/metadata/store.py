"""The metadata-store contract: version records and the operations every backend implements.

Invariants every backend keeps (tests/test_metadata_contract.py checks them on each one):
- a version becomes visible only through commit_version, which callers invoke after every chunk is
  durable on its peers, so a visible version never points at missing data;
- version numbers of one file are 1, 2, 3... in commit order, never reused (even after deleting the
  latest), and concurrent commits to one name each get their own number;
- a file id names one file for its whole life; deleting the whole file and uploading the name again
  creates a new file id whose versions restart at 1;
- a record returns its policy string exactly as committed, and "" for a record stored before
  versions carried one (an older SQLite row or MongoDB document);
- a delete marker is a version like any other (its own number and id, no chunks, size 0): a name
  whose latest version is a marker is left out of list_files, and deleting the marker makes the
  version before it the latest again;
- a name has at most one null version (S3's versioning suspended): committing one removes the
  previous null version of the name in the same commit;
- a commit's condition on the name's latest version (`if_latest`) and on its source version
  (`source_version`) is checked inside the commit, so a concurrent commit cannot slip in between.
Backends are synchronous (sqlite3, pymongo); the service layer calls them through AsyncMetadata so
blocking I/O never runs on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ChunkRef:
    """One chunk of a version, in file order.

    A replicated chunk is stored whole under `chunk_id` on each of `peers`. An erasure-coded chunk
    (an `ec:K+M` version) is stored as K + M fragments: `fragments[i]` is the id (SHA-256) of
    fragment i and `peers[i]` the peer that held it when the version was written; the chunk itself
    is stored nowhere, and `chunk_id` is checked after the fragments are decoded.
    """

    chunk_id: str
    size: int
    peers: tuple[str, ...] = ()
    fragments: tuple[str, ...] = ()

    @property
    def stored_ids(self) -> tuple[str, ...]:
        """The ids peers store for this chunk: its fragments, or the chunk itself."""
        return self.fragments or (self.chunk_id,)


@dataclass(frozen=True, order=True)
class Placed:
    """How a stored id is placed, when not as a chunk under the cluster's default policy: a chunk of
    a version with another replication policy, or fragment `index` of chunk `parent` coded `policy`.
    One id may be placed several ways at once: two chunks that share a fragment-sized stretch of
    bytes (zero-filled blocks of a disk image) code to the same fragment, owned by each chunk's owner."""

    policy: str
    parent: str = ""
    index: int = -1


@dataclass(frozen=True)
class CodedVersion:
    """The chunk list of one erasure-coded version, as the fragment rebuilder walks them."""

    version_id: str
    policy: str
    chunks: tuple[ChunkRef, ...]


@dataclass(frozen=True)
class NewVersion:
    """What an upload hands to commit_version once all its chunks are durable."""

    name: str
    size: int
    sha256: str
    chunks: tuple[ChunkRef, ...]
    content_type: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    policy: str = ""  # the redundancy policy the chunks were placed with, e.g. "rep:2"
    delete_marker: bool = False
    """A delete marker: no chunks, size 0; the name reads as deleted while it is the latest version."""
    null_version: bool = False
    """The name's null version (S3's versioning suspended): replaces the name's previous null version."""
    if_latest: str | None = None
    """A condition on the name's latest version when the commit happens: None, none; "" the name has
    no current version (no version, or a delete marker as the latest); a version id, that version is
    the latest and not a delete marker. Otherwise PreconditionFailed, and nothing is written."""
    source_version: str = ""
    """The version id of a copy's source, whose chunks this version shares: the commit fails with
    VersionNotFound if that version no longer exists, so no chunk of it can have been collected."""


@dataclass(frozen=True)
class VersionRecord:
    file_id: str
    version_id: str
    version: int
    name: str
    size: int
    sha256: str
    chunks: tuple[ChunkRef, ...]
    content_type: str
    metadata: Mapping[str, str]
    created_at: float
    latest: bool = False
    policy: str = ""
    """The redundancy policy spelling (ring.policy) its upload placed the chunks with. "" marks a
    record written before versions recorded one: the database never knew the cluster's replica count,
    so it is not guessed here; readers take the cluster's policy, which is what placed those chunks."""
    delete_marker: bool = False
    null_version: bool = False
    """The two flags of NewVersion; False for every record stored before they existed."""


@dataclass(frozen=True)
class FileRefSpec:
    """A file named by exactly one of name or file_id."""

    name: str | None = None
    file_id: str | None = None

    def __post_init__(self) -> None:
        if (self.name is None) == (self.file_id is None):
            raise ValueError("exactly one of name or file_id must be set")

    def __str__(self) -> str:
        return self.name if self.name is not None else f"id:{self.file_id}"


@dataclass(frozen=True)
class VersionSpec:
    """A version by number or id; neither means the latest."""

    number: int | None = None
    version_id: str | None = None

    def __str__(self) -> str:
        if self.number is not None:
            return str(self.number)
        return self.version_id or "latest"


@dataclass(frozen=True)
class ListPage:
    files: tuple[VersionRecord, ...]  # latest version of each file, ordered by name
    next_token: str  # "" on the last page
    prefixes: tuple[str, ...] = ()  # common prefixes of a delimited listing, ordered


@dataclass(frozen=True)
class VersionPage:
    """One page of every version of the files under a prefix (S3's ListObjectVersions)."""

    versions: tuple[VersionRecord, ...]  # by name, then newest first; delete markers included
    prefixes: tuple[str, ...]  # common prefixes of a delimited listing, ordered
    next_name: str  # "" on the last page: else the name (or common prefix) the page ended on
    next_version_id: str  # the version the page ended on ("" when it ended on a common prefix)


ROLES = ("read", "write", "admin")  # each role includes the ones before it


@dataclass(frozen=True)
class TokenRecord:
    """An API token as stored: never the secret, only its SHA-256.

    A token is shown to its owner once as `dfs_<token_id>_<secret>`; `token_id` (16 hex characters)
    is the public half used to look the record up, `secret_sha256` the hex digest of the secret half.
    """

    token_id: str
    secret_sha256: str
    role: str
    name: str
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True)
class S3KeyRecord:
    """An S3 access key as stored: the secret only sealed, never in plain text.

    SigV4 signs with the secret itself, so the server needs it back and a hash (as for tokens) would
    not do. `secret_ciphertext` is the secret sealed with AES-256-GCM (hex, tag included) under the
    peers' encryption key with `nonce` (hex, 96 bits); `key_id` is a fingerprint of that encryption
    key (not the key), so a peer holding another key says so instead of failing to decrypt.
    """

    access_key_id: str
    secret_ciphertext: str
    nonce: str
    key_id: str
    role: str
    name: str
    created_at: float
    revoked_at: float | None = None


BUCKET_VERSIONING = ("", "Enabled", "Suspended")  # "": never configured


@dataclass(frozen=True)
class BucketRecord:
    """An S3 bucket: a name space of file names (its objects are the files named `name/...`)."""

    name: str
    created_at: float
    versioning: str = ""
    """One of BUCKET_VERSIONING."""
    policy: str = ""
    """The redundancy policy of uploads into the bucket that name none (canonical spelling); "": the
    cluster's default."""


@dataclass(frozen=True)
class MultipartUpload:
    """An S3 multipart upload in progress, and what its completion commits besides the parts."""

    upload_id: str
    """32 hex digits; the first 16 are its creation time, so ids of one name sort by creation."""
    name: str
    created_at: float
    content_type: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    touched_at: float = 0.0
    """When a part was last stored, or a completion began (creation at first): expiry counts from it."""
    policy: str = ""
    """The redundancy policy every part is written with, fixed when the upload opens, so that the parts
    of one object never differ; "": the cluster's default."""


@dataclass(frozen=True)
class PartRecord:
    """One part of a multipart upload: its chunks are durable and referenced by this record alone
    until the upload is completed (the version then references them) or aborted."""

    upload_id: str
    part_number: int
    size: int
    etag: str
    """The hex MD5 of the part's bytes."""
    sha256: str
    """The hex SHA-256 of the part's bytes."""
    chunks: tuple[ChunkRef, ...]
    created_at: float
    policy: str = ""
    checksums: Mapping[str, str] = field(default_factory=dict)
    """The S3 checksums (`crc32`: base64 value...) the part's upload carried and matched."""


class MetadataStore(Protocol):
    """Synchronous metadata backend. Raises FileNotFound/VersionNotFound and MetadataUnavailable."""

    backend: str  # short name shown to users, e.g. "sqlite" or "mongodb"

    def commit_version(self, new: NewVersion) -> VersionRecord: ...

    def get_version(self, ref: FileRefSpec, version: VersionSpec) -> VersionRecord: ...

    def list_files(self, prefix: str, limit: int, page_token: str, delimiter: str = "") -> ListPage:
        """One page of the files whose names start with `prefix`, in name order.

        With a delimiter, a name that contains it after the prefix is not listed: it is rolled up
        into its common prefix (prefix + the text up to and including that first delimiter), which
        is listed once, as S3's ListObjectsV2 does. `limit` counts files and prefixes together, and
        the page token continues after the last key of the page, file or prefix, so paging with any
        limit neither repeats nor drops a key (common.page_keys). Raises InvalidRequest for a limit
        below 1 or a malformed token.
        """
        ...

    def list_versions(self, ref: FileRefSpec) -> list[VersionRecord]:
        """Every live version, newest first."""
        ...

    def list_all_versions(
        self, prefix: str, limit: int, after_name: str = "", after_version: str = "", delimiter: str = ""
    ) -> VersionPage:
        """One page of the versions (delete markers included) of the files under `prefix`: by name,
        each file's newest first. `limit` counts versions and common prefixes together. The page
        resumes after `after_name` (after its whole common prefix when it falls in one), or with
        `after_version` too, after that version of that name; an `after_version` the name no longer
        has is InvalidRequest (common.page_versions)."""
        ...

    def delete_version(self, ref: FileRefSpec, version: VersionSpec) -> VersionRecord: ...

    def delete_file(self, ref: FileRefSpec) -> list[VersionRecord]: ...

    def referenced_chunks(self, chunk_ids: Sequence[str]) -> set[str]:
        """The subset of chunk_ids that some live version, or some part of an open multipart upload,
        still uses (garbage collection asks this). A completion commits its version before it removes
        its parts, and this reads the parts no later than the versions, so a chunk passing from the
        parts to the version is never missed."""
        ...

    def placements(self, stored: Sequence[str], default_policy: str) -> dict[str, tuple[Placed, ...]]:
        """For the ids among `stored` that some version stores other than as a chunk under
        `default_policy`: every way they are placed, sorted (repair asks this to know who should hold
        what). A chunk referenced under several replication policies answers the widest."""
        ...

    def coded_versions(self, after: str, limit: int) -> list[CodedVersion]:
        """Up to `limit` erasure-coded versions with version ids above `after`, in version id order:
        the fragment rebuilder walks them all, a page at a time."""
        ...

    def add_token(self, record: TokenRecord) -> None:
        """Stores a new token; raises InvalidRequest if its token_id already exists."""
        ...

    def get_token(self, token_id: str) -> TokenRecord | None: ...

    def list_tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones included, oldest first."""
        ...

    def revoke_token(self, token_id: str, revoked_at: float) -> TokenRecord:
        """Marks the token revoked (idempotent: the first revocation time is kept); raises
        NotFound (TokenNotFound) when no such token exists."""
        ...

    def add_s3_key(self, record: S3KeyRecord) -> None:
        """Stores a new S3 access key; raises InvalidRequest if its access_key_id already exists."""
        ...

    def get_s3_key(self, access_key_id: str) -> S3KeyRecord | None: ...

    def list_s3_keys(self) -> list[S3KeyRecord]:
        """Every S3 access key, revoked ones included, oldest first."""
        ...

    def revoke_s3_key(self, access_key_id: str, revoked_at: float) -> S3KeyRecord:
        """Marks the key revoked (idempotent: the first revocation time is kept); raises
        NotFound (S3KeyNotFound) when no such key exists."""
        ...

    def add_bucket(self, record: BucketRecord) -> None:
        """Stores a new bucket; raises BucketExists if one of that name exists."""
        ...

    def get_bucket(self, name: str) -> BucketRecord | None: ...

    def list_buckets(self) -> list[BucketRecord]:
        """Every bucket, by name."""
        ...

    def set_bucket_versioning(self, name: str, versioning: str) -> BucketRecord:
        """Records the bucket's versioning state; raises BucketNotFound when there is no such bucket."""
        ...

    def set_bucket_policy(self, name: str, policy: str) -> BucketRecord:
        """Records the bucket's default redundancy policy ("" clears it); raises BucketNotFound."""
        ...

    def delete_bucket(self, name: str) -> None:
        """Removes the bucket record (its files are the caller's concern); raises BucketNotFound."""
        ...

    def create_upload(self, upload: MultipartUpload) -> None:
        """Stores a new multipart upload; raises InvalidRequest if its id exists."""
        ...

    def get_upload(self, upload_id: str, touched_at: float | None = None) -> MultipartUpload:
        """The open upload of that id; with `touched_at`, its touch time is first moved up to it (a
        completion keeps its upload from expiring while it runs). Raises UploadNotFound."""
        ...

    def put_part(self, part: PartRecord, source_version: str = "") -> None:
        """Stores a part, replacing the upload's part of the same number, and moves the upload's touch
        time up to the part's. Raises UploadNotFound when the upload is gone (no part is kept), and
        VersionNotFound when `source_version`, the version whose chunks a copied part shares, no
        longer exists (so none of those chunks can have been collected)."""
        ...

    def list_parts(self, upload_id: str, after: int, limit: int) -> list[PartRecord]:
        """Up to `limit` parts numbered above `after`, ascending; raises UploadNotFound."""
        ...

    def list_uploads(
        self, prefix: str, key_marker: str, upload_id_marker: str | None, limit: int
    ) -> list[MultipartUpload]:
        """Up to `limit` open uploads of the names under `prefix`, by name then id: those of names
        after `key_marker`, and unless `upload_id_marker` is None, those of `key_marker` itself with
        an id above it ("": all of them)."""
        ...

    def delete_upload(self, upload_id: str) -> MultipartUpload:
        """Removes the upload and its parts; raises UploadNotFound."""
        ...

    def expire_uploads(self, touched_before: float, limit: int) -> list[MultipartUpload]:
        """Removes up to `limit` uploads last touched before `touched_before`, with their parts."""
        ...

    def ping(self) -> None:
        """Raises MetadataUnavailable when the backend cannot serve requests."""
        ...

    def close(self) -> None: ...


class AsyncMetadata:
    """Runs a synchronous MetadataStore off the event loop, one call per worker thread."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self.backend = store.backend

    async def commit_version(self, new: NewVersion) -> VersionRecord:
        return await asyncio.to_thread(self.store.commit_version, new)

    async def get_version(self, ref: FileRefSpec, version: VersionSpec) -> VersionRecord:
        return await asyncio.to_thread(self.store.get_version, ref, version)

    async def list_files(self, prefix: str, limit: int, page_token: str, delimiter: str = "") -> ListPage:
        return await asyncio.to_thread(self.store.list_files, prefix, limit, page_token, delimiter)

    async def list_versions(self, ref: FileRefSpec) -> list[VersionRecord]:
        return await asyncio.to_thread(self.store.list_versions, ref)

    async def list_all_versions(
        self, prefix: str, limit: int, after_name: str = "", after_version: str = "", delimiter: str = ""
    ) -> VersionPage:
        return await asyncio.to_thread(
            self.store.list_all_versions, prefix, limit, after_name, after_version, delimiter
        )

    async def delete_version(self, ref: FileRefSpec, version: VersionSpec) -> VersionRecord:
        return await asyncio.to_thread(self.store.delete_version, ref, version)

    async def delete_file(self, ref: FileRefSpec) -> list[VersionRecord]:
        return await asyncio.to_thread(self.store.delete_file, ref)

    async def referenced_chunks(self, chunk_ids: Sequence[str]) -> set[str]:
        return await asyncio.to_thread(self.store.referenced_chunks, chunk_ids)

    async def placements(self, stored: Sequence[str], default_policy: str) -> dict[str, tuple[Placed, ...]]:
        return await asyncio.to_thread(self.store.placements, stored, default_policy)

    async def coded_versions(self, after: str, limit: int) -> list[CodedVersion]:
        return await asyncio.to_thread(self.store.coded_versions, after, limit)

    async def add_token(self, record: TokenRecord) -> None:
        await asyncio.to_thread(self.store.add_token, record)

    async def get_token(self, token_id: str) -> TokenRecord | None:
        return await asyncio.to_thread(self.store.get_token, token_id)

    async def list_tokens(self) -> list[TokenRecord]:
        return await asyncio.to_thread(self.store.list_tokens)

    async def revoke_token(self, token_id: str, revoked_at: float) -> TokenRecord:
        return await asyncio.to_thread(self.store.revoke_token, token_id, revoked_at)

    async def add_s3_key(self, record: S3KeyRecord) -> None:
        await asyncio.to_thread(self.store.add_s3_key, record)

    async def get_s3_key(self, access_key_id: str) -> S3KeyRecord | None:
        return await asyncio.to_thread(self.store.get_s3_key, access_key_id)

    async def list_s3_keys(self) -> list[S3KeyRecord]:
        return await asyncio.to_thread(self.store.list_s3_keys)

    async def revoke_s3_key(self, access_key_id: str, revoked_at: float) -> S3KeyRecord:
        return await asyncio.to_thread(self.store.revoke_s3_key, access_key_id, revoked_at)

    async def add_bucket(self, record: BucketRecord) -> None:
        await asyncio.to_thread(self.store.add_bucket, record)

    async def get_bucket(self, name: str) -> BucketRecord | None:
        return await asyncio.to_thread(self.store.get_bucket, name)

    async def list_buckets(self) -> list[BucketRecord]:
        return await asyncio.to_thread(self.store.list_buckets)

    async def set_bucket_versioning(self, name: str, versioning: str) -> BucketRecord:
        return await asyncio.to_thread(self.store.set_bucket_versioning, name, versioning)

    async def set_bucket_policy(self, name: str, policy: str) -> BucketRecord:
        return await asyncio.to_thread(self.store.set_bucket_policy, name, policy)

    async def delete_bucket(self, name: str) -> None:
        await asyncio.to_thread(self.store.delete_bucket, name)

    async def create_upload(self, upload: MultipartUpload) -> None:
        await asyncio.to_thread(self.store.create_upload, upload)

    async def get_upload(self, upload_id: str, touched_at: float | None = None) -> MultipartUpload:
        return await asyncio.to_thread(self.store.get_upload, upload_id, touched_at)

    async def put_part(self, part: PartRecord, source_version: str = "") -> None:
        await asyncio.to_thread(self.store.put_part, part, source_version)

    async def list_parts(self, upload_id: str, after: int, limit: int) -> list[PartRecord]:
        return await asyncio.to_thread(self.store.list_parts, upload_id, after, limit)

    async def list_uploads(
        self, prefix: str, key_marker: str, upload_id_marker: str | None, limit: int
    ) -> list[MultipartUpload]:
        return await asyncio.to_thread(self.store.list_uploads, prefix, key_marker, upload_id_marker, limit)

    async def delete_upload(self, upload_id: str) -> MultipartUpload:
        return await asyncio.to_thread(self.store.delete_upload, upload_id)

    async def expire_uploads(self, touched_before: float, limit: int) -> list[MultipartUpload]:
        return await asyncio.to_thread(self.store.expire_uploads, touched_before, limit)

    async def ping(self) -> None:
        await asyncio.to_thread(self.store.ping)

    async def close(self) -> None:
        await asyncio.to_thread(self.store.close)
