"""Multipart uploads: parts stored as they arrive, one version committed from them at completion.

A part goes through the same path as a whole upload (`UploadService.write`: chunked, hashed off the
loop, durable on the write plan's peers) and its completeness is proven the same way
(`UploadProof`). Every part is written under the redundancy policy the upload was opened with, so
the parts of one object never differ in it (a policy the cluster cannot meet is refused at the
opening, before any part is sent); what differs is the record: instead of a version, a part record holds the part's
chunk list, size, MD5 (its ETag) and SHA-256, under its open upload. A completion checks the part
list the client names against the stored parts and commits one version whose chunk list is the
parts' chunk lists one after the other: no byte is read, written or copied again. Each part is cut
into chunks of its own, so a part whose size is no multiple of the chunk size ends in a short chunk,
and the version's chunks vary in size (every reader places chunks by their recorded sizes).

The version's whole-object SHA-256 is not known without reading every byte, so a multipart version
carries a composite in its `sha256` field: the hex SHA-256 of the parts' SHA-256 digests (binary,
in part order), then `-N` for N parts. Being no plain 64-hex digest, it never passes for the
content's hash; every chunk is still checked against its id on every read.

UploadPartCopy references the source's chunks: a chunk the range covers whole becomes a chunk of the
part as it is, and only a chunk the range cuts (at its start or its end) is read and its part written
as a new, shorter chunk. The range is read once in any case, chunk by chunk and verified, for the
part's MD5 and SHA-256, unless it is the whole source and the source's MD5 is known.

Uploads untouched for the expiry (`DFS_MULTIPART_EXPIRY`) are removed with their parts by garbage
collection, which then collects their chunks like any unreferenced chunk.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from peer.clock import Clock
from peer.errors import (
    InvalidPart,
    InvalidPartOrder,
    InvalidRequest,
    MetadataUnavailable,
    PartTooSmall,
    TooLarge,
    UploadNotFound,
)
from peer.files import rules
from peer.files.limits import ClientLimits
from peer.files.proof import UploadProof
from peer.metadata.common import common_prefix, prefix_upper_bound
from peer.metadata.store import (
    AsyncMetadata,
    ChunkRef,
    FileRefSpec,
    MultipartUpload,
    NewVersion,
    PartRecord,
    VersionRecord,
    VersionSpec,
)
from peer.ring.policy import Policy
from peer.transfer.download import DownloadService, Piece
from peer.transfer.upload import Tap, UploadService

__all__ = [
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "Combined",
    "MultipartService",
    "PartDigests",
    "UploadPage",
    "combined_digest",
]

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024 * 1024
"""Every part of a completed upload but the last is at least this large (S3's minimum)."""
MAX_PART_SIZE = 5 * 1024**3
MAX_PARTS = 10_000
"""Part numbers run from 1 to MAX_PARTS."""
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_THREAD_BYTES = 256 * 1024

Data = bytes | memoryview


@dataclass(frozen=True)
class PartDigests:
    """What the edge computed over a part's bytes as they passed: the hex MD5 (the part's ETag) and
    the checksums the request declared and the data matched."""

    md5: str
    checksums: Mapping[str, str]


@dataclass(frozen=True)
class Combined:
    """The digests of a completed upload, from its parts' digests."""

    etag: str
    """The hex MD5 of the parts' MD5 digests, then `-N`."""
    sha256: str
    """The hex SHA-256 of the parts' SHA-256 digests, then `-N`."""
    parts: int


@dataclass(frozen=True)
class UploadPage:
    """One page of open uploads by name, then by id (creation time)."""

    uploads: tuple[MultipartUpload, ...]
    prefixes: tuple[str, ...]
    truncated: bool
    next_key_marker: str
    """The name (or common prefix) the page ended on, when truncated."""
    next_upload_id_marker: str


def combined_digest(digests: Sequence[str]) -> str:
    """`hex(md5(concat(digests)))-N` for MD5s, as S3 computes a multipart ETag."""
    joined = b"".join(bytes.fromhex(d) for d in digests)
    return f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(digests)}"


def composite_sha256(digests: Sequence[str]) -> str:
    """`hex(sha256(concat(digests)))-N` for SHA-256s: a multipart version's whole-object hash."""
    joined = b"".join(bytes.fromhex(d) for d in digests)
    return f"{hashlib.sha256(joined).hexdigest()}-{len(digests)}"


class MultipartService:
    def __init__(
        self,
        uploads: UploadService,
        downloads: DownloadService,
        metadata: AsyncMetadata,
        require_metadata: Callable[[], None],
        limits: ClientLimits,
        clock: Clock,
    ) -> None:
        """`require_metadata` raises while the metadata store is known to be down (FileService's)."""
        self._uploads = uploads
        self._downloads = downloads
        self._metadata = metadata
        self._require_metadata = require_metadata
        self._limits = limits
        self._clock = clock

    # ------------------------------------------------------------------------------- the upload

    async def create(self, name: str, *, content_type: str = "", metadata: Mapping[str, str] | None = None,
                     policy: str = "") -> MultipartUpload:
        """A new open upload of `name`, with the content type and metadata its version will carry and
        the redundancy policy ("" the cluster's) every part is written with. A policy the cluster
        cannot meet now is refused here, before the client sends any part."""
        self._require_metadata()
        policy = rules.check_policy(policy)
        self._uploads.writable(policy)
        now = self._clock.wall()
        upload = MultipartUpload(
            upload_id=f"{int(now * 1_000_000):016x}"[-16:] + secrets.token_hex(8),
            name=rules.check_name(name),
            created_at=now,
            content_type=rules.check_content_type(content_type),
            metadata=rules.check_metadata(metadata or {}, self._limits.max_metadata_bytes),
            touched_at=now,
            policy=policy,
        )
        await self._metadata.create_upload(upload)
        log.info("multipart upload %s of %s opened", upload.upload_id, upload.name)
        return upload

    async def get(self, upload_id: str, name: str) -> MultipartUpload:
        """The open upload `upload_id` of `name`, else UploadNotFound: for an edge that judges a
        completion's conditions only once the upload is known to exist."""
        return await self._open(upload_id, name)

    async def abort(self, upload_id: str, name: str) -> None:
        """Removes the upload and its parts; their chunks are collected after the GC grace."""
        await self._open(upload_id, name)
        deleted = await self._metadata.delete_upload(upload_id)
        log.info("multipart upload %s of %s aborted", deleted.upload_id, deleted.name)

    async def _open(self, upload_id: str, name: str, *, touch: bool = False) -> MultipartUpload:
        self._require_metadata()
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise UploadNotFound(upload_id[:40])
        upload = await self._metadata.get_upload(upload_id, self._clock.wall() if touch else None)
        if upload.name != name:
            raise UploadNotFound(upload_id)
        return upload

    # -------------------------------------------------------------------------------- the parts

    async def upload_part(
        self, upload_id: str, name: str, number: int, data: AsyncIterator[Data], proof: UploadProof,
        digests: Callable[[str], PartDigests], *, tap: Tap | None = None,
    ) -> PartRecord:
        """Stores `data` as part `number`, replacing an earlier part of that number. The part's chunks
        are written as they arrive and recorded once `proof` holds; `digests` is called after it did,
        with the part's hex SHA-256 (what it raises records no part). `tap` sees every byte in the
        write's own hashing pass (`UploadService.write`), done by the time `digests` is called."""
        _check_part_number(number)
        upload = await self._open(upload_id, name)
        limit = self._part_limit()
        if proof.declared is not None and not 0 <= proof.declared <= limit:
            raise TooLarge(f"declared part size {proof.declared} is outside 0..{limit}")
        written = await self._uploads.write(_bounded(data, limit if proof.declared is None else proof.declared,
                                                     proof.declared is not None), _policy(upload.policy), tap=tap)
        proof.check(written.size, written.sha256)
        done = digests(written.sha256)
        part = PartRecord(
            upload_id=upload_id, part_number=number, size=written.size, etag=done.md5, sha256=written.sha256,
            chunks=written.chunks, created_at=self._clock.wall(), policy=written.policy,
            checksums=dict(done.checksums),
        )
        await self._metadata.put_part(part)
        log.info("multipart upload %s: part %d stored (%d bytes, %d chunks)", upload_id, number, part.size,
                 len(part.chunks))
        return part

    async def copy_part(
        self, upload_id: str, name: str, number: int, source: VersionRecord, offset: int, length: int,
        source_md5: str | None = None,
    ) -> PartRecord:
        """Part `number` made of bytes [offset, offset + length) of the version `source` (length 0: to
        its end), referencing its chunks where the range covers them whole, when the source was stored
        under the upload's policy (otherwise every byte is written anew under the upload's policy).
        `source_md5` is the source's hex MD5 when known, which spares reading a copy of the whole source."""
        _check_part_number(number)
        upload = await self._open(upload_id, name)
        pinned = VersionSpec(version_id=source.version_id)
        record, rng, pieces = await self._downloads.open(FileRefSpec(name=source.name), pinned, offset, length)
        try:
            if rng.length > self._part_limit():
                raise TooLarge(f"the copied range of {rng.length} bytes is larger than a part may be")
            whole = (rng.offset, rng.length) == (0, record.size)
            default = str(self._uploads.default_policy)
            reuse = (record.policy or default) == (upload.policy or default)
            if reuse and whole and source_md5 is not None and _is_sha256(record.sha256):
                chunks, md5, sha256, policies = record.chunks, source_md5, record.sha256, {record.policy}
            else:
                chunks, md5, sha256, policies = await self._copy_pieces(pieces, record.policy if reuse else None,
                                                                        upload.policy)
        finally:
            close = getattr(pieces, "aclose", None)
            if close is not None:
                await close()
        part = PartRecord(
            upload_id=upload_id, part_number=number, size=rng.length, etag=md5, sha256=sha256, chunks=chunks,
            created_at=self._clock.wall(), policy=_one_policy(policies),
        )
        await self._metadata.put_part(part, source_version=record.version_id)
        log.info("multipart upload %s: part %d copied from %s v%d (%d bytes, %d chunks)", upload_id, number,
                 record.name, record.version, part.size, len(part.chunks))
        return part

    async def _copy_pieces(
        self, pieces: AsyncIterator[Piece], source_policy: str | None, policy: str
    ) -> tuple[tuple[ChunkRef, ...], str, str, set[str]]:
        """(chunks, MD5, SHA-256, policies) of the range: each whole chunk as it is (unless
        `source_policy` is None: the source's placement is not the upload's), each other one written
        anew under `policy` from the bytes the range holds of it."""
        md5 = hashlib.md5(usedforsecurity=False)
        sha256 = hashlib.sha256()
        chunks: list[ChunkRef] = []
        policies: set[str] = set()
        async for piece in pieces:
            ref, data = piece.chunk, piece.data
            if len(data) >= _THREAD_BYTES:
                await asyncio.to_thread(_update, (md5, sha256), data)
            else:
                _update((md5, sha256), data)
            if source_policy is not None and len(data) == ref.size:
                chunks.append(ref)
                policies.add(source_policy)
                continue
            written = await self._uploads.write(_once(bytes(data)), _policy(policy))
            chunks.extend(written.chunks)
            policies.add(written.policy)
        return tuple(chunks), md5.hexdigest(), sha256.hexdigest(), policies

    def _part_limit(self) -> int:
        return min(MAX_PART_SIZE, self._limits.max_file_size)

    async def list_parts(
        self, upload_id: str, name: str, after: int, limit: int
    ) -> tuple[MultipartUpload, list[PartRecord], bool]:
        """(the upload, up to `limit` parts numbered above `after`, whether more follow)."""
        upload = await self._open(upload_id, name)
        if limit <= 0:
            return upload, [], False
        parts = await self._metadata.list_parts(upload_id, max(after, 0), limit + 1)
        return upload, parts[:limit], len(parts) > limit

    # ----------------------------------------------------------------------------- completion

    async def complete(
        self, upload_id: str, name: str, chosen: Sequence[tuple[int, str]],
        late_metadata: Callable[[Combined], Mapping[str, str]] | None = None, *, null_version: bool = False,
        if_latest: str | None = None,
    ) -> VersionRecord:
        """Commits one version of `name` from the parts `chosen` ((number, ETag) in ascending order),
        then removes the upload. `late_metadata` adds entries known only now (the combined ETag);
        `null_version` makes the version the name's null version, as `FileService.put` does;
        `if_latest` is the commit's condition on the name's latest version (NewVersion.if_latest).
        A completion refused by its condition leaves the upload and its parts as they were."""
        if if_latest:
            rules.check_id(if_latest, "version id")
        upload = await self._open(upload_id, name, touch=True)  # no expiry while it completes
        if not chosen:
            raise InvalidRequest("a multipart completion must name at least one part")
        numbers = [number for number, _ in chosen]
        if any(later <= earlier for earlier, later in zip(numbers, numbers[1:], strict=False)):
            raise InvalidPartOrder("the list of parts was not in ascending order; parts must be ordered by part "
                                   "number")
        stored = {part.part_number: part for part in await self._metadata.list_parts(upload_id, 0, MAX_PARTS)}
        parts: list[PartRecord] = []
        for number, etag in chosen:
            part = stored.get(number)
            if part is None or _plain_etag(etag) != part.etag:
                raise InvalidPart(f"part {number} was not found or its ETag did not match; one or more of the "
                                  "specified parts could not be found")
            parts.append(part)
        for part in parts[:-1]:
            if part.size < MIN_PART_SIZE:
                raise PartTooSmall(f"part {part.part_number} is {part.size} bytes; every part but the last must "
                                   f"be at least {MIN_PART_SIZE} bytes")
        size = sum(part.size for part in parts)
        if size > self._limits.max_file_size:
            raise TooLarge(f"the completed object of {size} bytes is larger than DFS_MAX_FILE_SIZE")
        combined = Combined(combined_digest([p.etag for p in parts]), composite_sha256([p.sha256 for p in parts]),
                            len(parts))
        metadata = dict(upload.metadata)
        if late_metadata is not None:
            metadata = rules.check_metadata({**metadata, **late_metadata(combined)}, self._limits.max_metadata_bytes)
        new = NewVersion(
            name=upload.name, size=size, sha256=combined.sha256,
            chunks=tuple(chunk for part in parts for chunk in part.chunks),
            content_type=upload.content_type, metadata=metadata, created_at=self._clock.wall(),
            policy=_one_policy({part.policy for part in parts}), null_version=null_version, if_latest=if_latest,
        )
        record = await self._metadata.commit_version(new)
        log.info("multipart upload %s completed: %s v%d (%d bytes, %d parts, %d chunks)", upload_id, record.name,
                 record.version, size, len(parts), len(new.chunks))
        try:  # after the commit: the parts keep the chunks referenced until the version does
            await self._metadata.delete_upload(upload_id)
        except UploadNotFound:
            pass  # aborted or expired meanwhile: the version references the chunks already
        except MetadataUnavailable as exc:
            log.warning("multipart upload %s: its parts stay until it expires: %s", upload_id, exc)
        return record

    # -------------------------------------------------------------------------------- listing

    async def list_uploads(
        self, prefix: str, delimiter: str, key_marker: str, upload_id_marker: str, limit: int
    ) -> UploadPage:
        """One page of open uploads of the names under `prefix`, by name then by id; with a
        delimiter, names are rolled up into common prefixes as a listing of files is. `limit`
        counts uploads and prefixes together. The page resumes after `key_marker` (after its whole
        common prefix when it falls in one) or, with `upload_id_marker`, after that upload."""
        self._require_metadata()
        delimiter = rules.check_delimiter(delimiter)
        uploads: list[MultipartUpload] = []
        prefixes: list[str] = []
        last: tuple[str, str] = ("", "")
        start = _resume(prefix, delimiter, key_marker, upload_id_marker)
        while start is not None and limit > 0:
            batch = await self._metadata.list_uploads(prefix, start[0], start[1], limit + 1)
            for upload in batch:
                if len(uploads) + len(prefixes) == limit:
                    return UploadPage(tuple(uploads), tuple(prefixes), True, *last)
                group = common_prefix(upload.name, prefix, delimiter)
                if group is not None:
                    prefixes.append(group)
                    last = (group, "")
                    start = _past(group)
                    break
                uploads.append(upload)
                last = (upload.name, upload.upload_id)
                start = (upload.name, upload.upload_id)
            else:
                if len(batch) <= limit:
                    break
        return UploadPage(tuple(uploads), tuple(prefixes), False, "", "")


def _resume(prefix: str, delimiter: str, key_marker: str, upload_id_marker: str) -> tuple[str, str | None] | None:
    """Where a listing of uploads starts: (name, id) to list after (id None: after every id of name)."""
    if upload_id_marker and key_marker:  # an upload id marker without a key marker is ignored, as in S3
        return key_marker, upload_id_marker
    if not key_marker:
        return prefix, ""
    group = common_prefix(key_marker, prefix, delimiter) if key_marker.startswith(prefix) else None
    return (key_marker, None) if group is None else _past(group)


def _past(group: str) -> tuple[str, str] | None:
    """The start just past every name that begins with `group`."""
    upper = prefix_upper_bound(group)
    return None if upper is None else (upper, "")


def _check_part_number(number: int) -> None:
    if not 1 <= number <= MAX_PARTS:
        raise InvalidRequest(f"part number must be an integer between 1 and {MAX_PARTS}, inclusive")


def _plain_etag(etag: str) -> str:
    return etag.strip().strip('"').strip().lower()


def _is_sha256(value: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{64}", value) is not None


def _one_policy(policies: set[str]) -> str:
    """The one redundancy policy of a set of chunks ("" is a record older than policies: the cluster's)."""
    named = policies - {""}
    if len(named) > 1:
        raise InvalidRequest(f"the parts were stored under different redundancy policies: {sorted(named)}")
    return next(iter(named), "")


def _policy(recorded: str) -> Policy | None:
    """The policy an upload record names; None ("") is the cluster's."""
    return Policy.parse(recorded) if recorded else None


def _update(hashes: tuple[hashlib._Hash, ...], data: Data) -> None:
    for digest in hashes:
        digest.update(data)


async def _once(data: bytes) -> AsyncIterator[Data]:
    yield data


async def _bounded(data: AsyncIterator[Data], limit: int, declared: bool) -> AsyncIterator[Data]:
    received = 0
    async for piece in data:
        received += len(piece)
        if received > limit:
            if declared:
                raise InvalidRequest(f"the part brought more than the {limit} bytes its header declared")
            raise TooLarge(f"a part larger than {limit} bytes")
        if piece:
            yield piece
