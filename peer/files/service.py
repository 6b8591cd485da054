"""FileService: every file operation a client edge offers, with the rules and limits that guard it.

An edge (the gRPC FileStore service, an HTTP edge) only converts its wire values to these calls and
maps the DfsError they raise to its own status, once. Every rule on what a client may do to files
lives here or below: names and metadata, size limits, an upload's proof that it arrived whole, and
refusing at once, rather than after the backend's own timeout, while the metadata store is known to
be down (so an upload does not write chunks it could never commit).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from peer.clock import Clock, SystemClock
from peer.errors import (
    ConfigError,
    DataLoss,
    DeleteMarkerFound,
    InvalidRequest,
    MetadataUnavailable,
    TooLarge,
    VersionNotFound,
)
from peer.files import rules
from peer.files.limits import ClientLimits
from peer.files.multipart import MultipartService
from peer.files.proof import UploadProof
from peer.metadata.common import encode_token
from peer.metadata.store import (
    AsyncMetadata,
    FileRefSpec,
    ListPage,
    NewVersion,
    TokenRecord,
    VersionPage,
    VersionRecord,
    VersionSpec,
)
from peer.s3.names import bucket_name_problem
from peer.security.s3keys import NewS3Key, S3KeyInfo, S3Keys
from peer.security.tokens import TokenVerifier, check_role, check_token_name, new_token
from peer.transfer.download import ByteRange, DownloadService, Piece
from peer.transfer.upload import Tap, UploadService, UploadSpec

log = logging.getLogger(__name__)

Data = bytes | memoryview


@dataclass(frozen=True)
class SmallRead:
    """A range read whole, for an answer in one message."""

    record: VersionRecord
    range: ByteRange
    pieces: tuple[Piece, ...] | None  # None: the range is larger than the caller's or this peer's limit


def _always_healthy() -> tuple[bool, str]:
    return True, ""


class FileService:
    def __init__(
        self,
        uploads: UploadService,
        downloads: DownloadService,
        metadata: AsyncMetadata,
        metadata_health: Callable[[], tuple[bool, str]] = _always_healthy,
        *,
        limits: ClientLimits | None = None,
        verifier: TokenVerifier | None = None,
        s3_keys: S3Keys | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`metadata_health` is (healthy, last error) of the store as the peer's periodic ping saw it.
        `verifier` is the token cache of this peer's edges (None with authentication off): a token
        revoked here is dropped from it, so it stops working here at once. `s3_keys` holds the
        peer's S3 access keys (with their cache, which a revocation here clears the same way)."""
        self._uploads = uploads
        self._downloads = downloads
        self._metadata = metadata
        self._metadata_health = metadata_health
        self._verifier = verifier
        self._s3_keys = s3_keys
        self._clock = clock or SystemClock()
        self.limits = limits or ClientLimits()
        self.multipart = MultipartService(uploads, downloads, metadata, self.require_metadata, self.limits,
                                          self._clock)
        """S3's multipart uploads, under the same rules, limits and metadata-health check."""

    def require_metadata(self) -> None:
        """Raises MetadataUnavailable while the store is known to be down. Every operation that needs
        the store calls it first; an edge may call it before it reads a request stream."""
        healthy, error = self._metadata_health()
        if not healthy:
            raise MetadataUnavailable(self._metadata.backend, error)

    # ------------------------------------------------------------------------------------ writes

    async def put(
        self,
        name: str,
        data: AsyncIterator[Data],
        proof: UploadProof,
        *,
        content_type: str = "",
        user_metadata: Mapping[str, str] | None = None,
        late_metadata: Callable[[str], Mapping[str, str]] | None = None,
        null_version: bool = False,
        if_latest: str | None = None,
        policy: str | None = None,
        tap: Tap | None = None,
    ) -> VersionRecord:
        """Stores `data` as a new version of `name` once every chunk is durable and `proof` holds.

        `null_version` makes it the name's null version (replacing the previous one); `if_latest` is
        a condition on the name's latest version (NewVersion.if_latest), checked inside the commit:
        PreconditionFailed when it does not hold, and the stored chunks are left to collection.
        `policy` is the redundancy policy to store it with ("" the cluster's default); None means the
        default of the bucket `name` falls in, else the cluster's. A policy wider than the usable peers
        is refused (InsufficientReplicas) before any data is read.

        The edge fills `proof.trailer` in as the client sends it, before `data` ends. A declared size
        over the limit is refused before any data is read; data beyond the declared size or the limit
        is refused before it reaches the chunker. `late_metadata` gives entries known only once `data`
        has ended (a digest computed as the bytes passed): it is called with the data's hex SHA-256
        after the proof holds and before the commit (what it raises leaves no version), and its
        entries join `user_metadata` under the same rules. `tap` sees every byte in the upload's own
        hashing pass (`UploadService.write`), done by the time `late_metadata` is called.
        """
        self.require_metadata()
        spec = UploadSpec(
            name=rules.check_name(name),
            content_type=rules.check_content_type(content_type),
            metadata=rules.check_metadata(user_metadata or {}, self.limits.max_metadata_bytes),
            null_version=null_version,
            if_latest=_checked_condition(if_latest),
            policy=await self._policy_for(name, policy),
        )
        limit = self.limits.max_file_size
        if proof.declared is not None and not 0 <= proof.declared <= limit:
            raise TooLarge(f"declared size {proof.declared} is outside 0..{limit} (DFS_MAX_FILE_SIZE)")

        def check(size: int, sha256: str) -> Mapping[str, str] | None:
            proof.check(size, sha256)
            if late_metadata is None:
                return None
            return rules.check_metadata({**spec.metadata, **late_metadata(sha256)}, self.limits.max_metadata_bytes)

        return await self._uploads.upload(spec, self._bounded(data, proof.declared), check, tap=tap)

    async def _policy_for(self, name: str, requested: str | None) -> str:
        """The policy an upload of `name` is stored with: the one it names, else the default of the
        bucket it falls in (`BUCKET/...`), else "" (the cluster's). Only a name that can be under a
        bucket costs a lookup."""
        if requested is not None:
            return rules.check_policy(requested)
        bucket, sep, _ = name.partition("/")
        if not sep or bucket_name_problem(bucket) is not None:
            return ""
        record = await self._metadata.get_bucket(bucket)
        return record.policy if record is not None else ""

    async def _bounded(self, data: AsyncIterator[Data], declared: int | None) -> AsyncIterator[Data]:
        limit = self.limits.max_file_size if declared is None else declared
        received = 0
        async for piece in data:
            received += len(piece)
            if received > limit:
                if declared is not None:
                    raise InvalidRequest(f"the upload brought more than the {declared} bytes its header declared")
                raise TooLarge(f"upload larger than the limit of {limit} bytes (DFS_MAX_FILE_SIZE)")
            if piece:
                yield piece

    async def copy(
        self,
        source: VersionRecord,
        name: str,
        *,
        content_type: str,
        metadata: Mapping[str, str],
        null_version: bool = False,
        if_latest: str | None = None,
        policy: str | None = None,
    ) -> VersionRecord:
        """A new version of `name` with the content of the version `source`: the same chunks, size
        and SHA-256, so no byte is moved. The commit requires `source` to exist still
        (NewVersion.source_version), so garbage collection can never take a chunk the copy shares;
        `content_type` and `metadata` are the copy's own (the source's for a plain copy).

        `policy` None keeps the source's redundancy policy; a policy ("" the cluster's default) that
        differs from the one the source was stored with makes a copy of the data instead, written
        under that policy, since chunks placed for one policy do not give another's redundancy."""
        self.require_metadata()
        if source.delete_marker:
            raise DeleteMarkerFound(source.name, source.version_id, by_id=True)
        if policy is not None:
            wanted = rules.check_policy(policy)
            default = str(self._uploads.default_policy)
            if (wanted or default) != (source.policy or default):
                return await self._rewrite(source, name, content_type=content_type, metadata=metadata,
                                           null_version=null_version, if_latest=if_latest, policy=wanted)
        new = NewVersion(
            name=rules.check_name(name),
            size=source.size,
            sha256=source.sha256,
            chunks=source.chunks,
            content_type=rules.check_content_type(content_type),
            metadata=rules.check_metadata(metadata, self.limits.max_metadata_bytes),
            created_at=self._clock.wall(),
            policy=source.policy,
            null_version=null_version,
            if_latest=_checked_condition(if_latest),
            source_version=source.version_id,
        )
        record = await self._metadata.commit_version(new)
        log.info("copied %s v%d to %s v%d (%d bytes, no data moved)", source.name, source.version, record.name,
                 record.version, record.size)
        return record

    async def _rewrite(
        self, source: VersionRecord, name: str, *, content_type: str, metadata: Mapping[str, str],
        null_version: bool, if_latest: str | None, policy: str,
    ) -> VersionRecord:
        """The copy that moves data: the source's bytes, each chunk verified as it is read, stored
        again under `policy` as a new version of `name`."""
        spec = UploadSpec(
            name=rules.check_name(name),
            content_type=rules.check_content_type(content_type),
            metadata=rules.check_metadata(metadata, self.limits.max_metadata_bytes),
            null_version=null_version,
            if_latest=_checked_condition(if_latest),
            policy=policy,
        )
        pinned = VersionSpec(version_id=source.version_id)
        _, _, pieces = await self._downloads.open(FileRefSpec(name=source.name), pinned, 0, 0)

        async def data() -> AsyncIterator[Data]:
            async for piece in pieces:
                yield piece.data

        def check(size: int, _sha256: str) -> None:
            if size != source.size:
                raise DataLoss(f"{source.name} v{source.version} read back {size} of its {source.size} bytes")

        try:
            record = await self._uploads.upload(spec, data(), check)
        finally:
            close = getattr(pieces, "aclose", None)
            if close is not None:
                await close()
        log.info("copied %s v%d to %s v%d under %s (%d bytes)", source.name, source.version, record.name,
                 record.version, record.policy, record.size)
        return record

    async def delete_marker(self, name: str, *, null_version: bool = False) -> VersionRecord:
        """Commits a delete marker as the latest version of `name` (the file need not exist): the name
        then reads as deleted while its versions stay, until the marker itself is deleted."""
        self.require_metadata()
        new = NewVersion(name=rules.check_name(name), size=0, sha256="", chunks=(), created_at=self._clock.wall(),
                         delete_marker=True, null_version=null_version)
        record = await self._metadata.commit_version(new)
        log.info("delete marker %s v%d", record.name, record.version)
        return record

    async def delete(self, ref: FileRefSpec, version: VersionSpec | None = None) -> list[VersionRecord]:
        """Deletes one version, or with `version` None the whole file with every version."""
        self.require_metadata()
        ref = _checked_ref(ref)
        if version is None:
            deleted = await self._metadata.delete_file(ref)
        else:
            deleted = [await self._metadata.delete_version(ref, _checked_version(version))]
        for rec in deleted:
            log.info("deleted %s v%d", rec.name, rec.version)
        return deleted

    # ------------------------------------------------------------------------------------- reads

    async def open(
        self, ref: FileRefSpec, version: VersionSpec, offset: int = 0, length: int = 0
    ) -> tuple[VersionRecord, ByteRange, AsyncIterator[Piece]]:
        """The version, the range resolved against its size (length 0: to the end), and its verified pieces."""
        self.require_metadata()
        return await self._downloads.open(_checked_ref(ref), _checked_version(version), offset, length)

    async def read_small(
        self, ref: FileRefSpec, version: VersionSpec, offset: int, length: int, max_bytes: int
    ) -> SmallRead:
        """A range read whole when it is at most `max_bytes` (capped by this peer's limit), with the
        same lookup and verification as `open`; a larger range gets the version and range alone."""
        record, rng, data = await self.open(ref, version, offset, length)
        if rng.length > min(max(max_bytes, 0), self.limits.max_get_bytes):
            return SmallRead(record, rng, None)
        return SmallRead(record, rng, tuple([piece async for piece in data]))

    async def stat(self, ref: FileRefSpec, version: VersionSpec) -> VersionRecord:
        """The version's record; DeleteMarkerFound (a FileNotFound) when it is a delete marker."""
        record = await self.stat_version(ref, version)
        if record.delete_marker:
            raise DeleteMarkerFound(str(ref), record.version_id, by_id=version != VersionSpec(),
                                    null_version=record.null_version)
        return record

    async def stat_version(self, ref: FileRefSpec, version: VersionSpec) -> VersionRecord:
        """The version's record, a delete marker included."""
        self.require_metadata()
        return await self._metadata.get_version(_checked_ref(ref), _checked_version(version))

    async def list_files(
        self, prefix: str, page_size: int, page_token: str, delimiter: str = "", *, start_after: str = ""
    ) -> ListPage:
        """One page of latest versions by name; with a delimiter, names are rolled up into common prefixes.

        Without a page token, `start_after` starts the listing after that name, as the token of a page
        that ended there would: after the whole common prefix the name falls in, when it falls in one.
        """
        self.require_metadata()
        prefix = rules.check_name(prefix) if prefix else ""
        delimiter = rules.check_delimiter(delimiter)
        if not page_token and start_after:
            page_token = encode_token(rules.check_name(start_after))
        return await self._metadata.list_files(prefix, rules.check_page_size(page_size), page_token, delimiter)

    async def versions(self, ref: FileRefSpec) -> list[VersionRecord]:
        """Every version of a file, newest first, delete markers included."""
        self.require_metadata()
        return await self._metadata.list_versions(_checked_ref(ref))

    async def null_version(self, ref: FileRefSpec) -> VersionRecord:
        """The file's null version (NewVersion.null_version); VersionNotFound when it has none."""
        for record in await self.versions(ref):
            if record.null_version:
                return record
        raise VersionNotFound(str(ref), "null")

    async def list_all_versions(
        self, prefix: str, page_size: int, after_name: str = "", after_version: str = "", delimiter: str = ""
    ) -> VersionPage:
        """One page of every version (delete markers included) of the files under `prefix`, by name
        and each file's newest first; it resumes after `after_name`, or after its version `after_version`."""
        self.require_metadata()
        prefix = rules.check_name(prefix) if prefix else ""
        delimiter = rules.check_delimiter(delimiter)
        after_name = rules.check_name(after_name) if after_name else ""
        after_version = rules.check_id(after_version, "version id") if after_version else ""
        return await self._metadata.list_all_versions(
            prefix, rules.check_page_size(page_size), after_name, after_version, delimiter
        )

    # ------------------------------------------------------------------------------------ tokens

    async def create_token(self, role: str, name: str) -> tuple[str, TokenRecord]:
        """(the token, shown to its owner once; the record stored, which holds only its hash)."""
        self.require_metadata()
        token, record = new_token(check_role(role), check_token_name(name), self._clock.wall())
        await self._metadata.add_token(record)
        log.info("created %s token %s (%s)", record.role, record.token_id, record.name or "unnamed")
        return token, record

    async def list_tokens(self) -> list[TokenRecord]:
        self.require_metadata()
        return await self._metadata.list_tokens()

    async def revoke_token(self, token_id: str) -> TokenRecord:
        self.require_metadata()
        record = await self._metadata.revoke_token(rules.check_token_id(token_id), self._clock.wall())
        if self._verifier is not None:
            self._verifier.forget(record.token_id)
        log.info("revoked token %s", record.token_id)
        return record

    async def token(self, token_id: str) -> TokenRecord | None:
        """The record of the caller's token, for WhoAmI; None for a caller without one (auth off)."""
        if not token_id:
            return None
        self.require_metadata()
        return await self._metadata.get_token(token_id)


    # ------------------------------------------------------------------------------- S3 keys

    async def create_s3_key(self, role: str, name: str) -> NewS3Key:
        """A new S3 access key: its secret, shown to its owner once, and the record stored sealed."""
        self.require_metadata()
        made = await self._keys().create(role, name)
        log.info("created %s S3 access key %s (%s)", made.record.role, made.access_key_id, name or "unnamed")
        return made

    async def list_s3_keys(self) -> list[S3KeyInfo]:
        self.require_metadata()
        return await self._keys().list()

    async def revoke_s3_key(self, access_key_id: str) -> S3KeyInfo:
        self.require_metadata()
        revoked = await self._keys().revoke(access_key_id)
        log.info("revoked S3 access key %s", revoked.access_key_id)
        return revoked

    def _keys(self) -> S3Keys:
        if self._s3_keys is None:
            raise ConfigError("this peer serves no S3 access keys")
        return self._s3_keys


def _checked_ref(ref: FileRefSpec) -> FileRefSpec:
    if ref.name is not None:
        return FileRefSpec(name=rules.check_name(ref.name))
    return FileRefSpec(file_id=rules.check_id(ref.file_id or "", "file id"))


def _checked_condition(if_latest: str | None) -> str | None:
    if if_latest:
        return rules.check_id(if_latest, "version id")
    return if_latest


def _checked_version(version: VersionSpec) -> VersionSpec:
    if version.number is not None:
        return VersionSpec(number=rules.check_version_number(version.number))
    if version.version_id is not None:
        return VersionSpec(version_id=rules.check_id(version.version_id, "version id"))
    return version
