"""Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy, ListParts,
ListMultipartUploads, CompleteMultipartUpload and AbortMultipartUpload, over
`FileService.multipart` (peer/files/multipart.py).

A part's body is read, decoded and verified exactly as a PutObject body is (`ObjectBody`), and
streamed into chunks as it arrives; its record is stored once the whole body arrived and matched
every digest it declared, so a refused or broken part stores nothing. Completion commits one
version from the parts' chunk lists (no data is read or copied), with the ETag
`hex(md5(part MD5s))-N` and the composite SHA-256 checksum of its parts (`peer.s3.objectmeta`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import quote

from aiohttp import web

from peer.errors import DeleteMarkerFound, FileNotFound, NotFound
from peer.files import Trailer, UploadProof
from peer.files.multipart import MAX_PARTS, PartDigests
from peer.http.s3.bodies import ObjectBody, read_document
from peer.http.s3.call import S3Call, S3Services, storage_policy
from peer.http.s3.objects import write_condition
from peer.http.s3.versions import SUSPENDED, s3_version_id, version_spec
from peer.metadata.store import FileRefSpec, VersionRecord
from peer.s3 import S3Error, stored_content_encoding, xmldoc
from peer.s3 import multipartdoc as doc
from peer.s3.conditions import check_copy_preconditions
from peer.s3.names import CopySource, bucket_prefix, key_of, object_name, parse_copy_source
from peer.s3.objectmeta import etag_of, multipart_metadata, stored_metadata

__all__ = [
    "abort_multipart_upload",
    "complete_multipart_upload",
    "create_multipart_upload",
    "list_multipart_uploads",
    "list_parts",
    "upload_part",
    "upload_part_copy",
]

MAX_LISTED = 1000
_COPY_RANGE = re.compile(r"bytes=(\d+)-(\d+)")
_MD5 = re.compile(r"[0-9a-f]{32}")


async def create_multipart_upload(services: S3Services, call: S3Call) -> web.StreamResponse:
    """If-None-Match and If-Match are not this operation's, as in S3, which ignores them here: the
    condition of a multipart write is sent with, and judged at, its completion."""
    bucket = await services.buckets.get(call.bucket)
    name = object_name(call.bucket, call.key)
    encoding = stored_content_encoding(call.header("content-encoding"))
    metadata = stored_metadata(call.head.header_values, call.header, encoding)
    upload = await services.files.multipart.create(name, content_type=call.header("content-type") or "",
                                                   metadata=metadata, policy=storage_policy(call, bucket))
    headers = {}
    algorithm = call.header("x-amz-checksum-algorithm")
    if algorithm:
        headers["x-amz-checksum-algorithm"] = algorithm.strip().upper()
    return web.Response(body=doc.initiate_result(call.bucket, call.key, upload.upload_id), headers=headers,
                        content_type=xmldoc.CONTENT_TYPE)


async def upload_part(services: S3Services, call: S3Call) -> web.StreamResponse:
    number = _part_number(call)
    await services.buckets.get(call.bucket)
    name = object_name(call.bucket, call.key)
    body = ObjectBody(call.request, call.auth, call.head, services.idle_s)
    proof = UploadProof(declared=_declared_size(call))

    async def data() -> AsyncIterator[bytes | memoryview]:
        async for piece in body.pieces():
            yield piece
        assert body.size is not None
        proof.trailer = Trailer(body.size)  # every byte arrived, in the framing it declared

    def digests(sha256: str) -> PartDigests:
        result = body.verify(sha256)  # every digest the body declared, before the part is recorded
        return PartDigests(result.md5, result.checksums)

    part = await services.files.multipart.upload_part(_upload_id(call), name, number, data(), proof, digests,
                                                      tap=body.tap)
    headers = {"ETag": f'"{part.etag}"'}
    for algorithm, value in part.checksums.items():
        headers[f"x-amz-checksum-{algorithm}"] = value
    return web.Response(status=200, headers=headers)


async def upload_part_copy(services: S3Services, call: S3Call) -> web.StreamResponse:
    """A part made of a range of another object (`x-amz-copy-source`, `x-amz-copy-source-range`),
    its chunks referenced where the range covers them whole (peer/files/multipart.py)."""
    number = _part_number(call)
    await services.buckets.get(call.bucket)
    name = object_name(call.bucket, call.key)
    source_of = parse_copy_source(call.header("x-amz-copy-source") or "")
    await services.buckets.get(source_of.bucket)
    source = await _source_version(services, source_of)
    etag = etag_of(source.metadata, source.sha256)
    check_copy_preconditions(call.header, etag, source.created_at)
    offset, length = _copy_range(call.header("x-amz-copy-source-range"), source.size)
    part = await services.files.multipart.copy_part(_upload_id(call), name, number, source, offset, length,
                                                    etag if _MD5.fullmatch(etag) else None)
    headers = {"x-amz-copy-source-version-id": s3_version_id(source)}
    return web.Response(body=doc.copy_part_result(part.etag, part.created_at), headers=headers,
                        content_type=xmldoc.CONTENT_TYPE)


async def _source_version(services: S3Services, source_of: CopySource) -> VersionRecord:
    """The version a copy source names, refused as S3 refuses a copy's source (CopyObject's rules)."""
    source_name = object_name(source_of.bucket, source_of.key)
    try:
        spec = await version_spec(services.files, source_name, source_of.version_id)
        return await services.files.stat(FileRefSpec(name=source_name), spec)
    except DeleteMarkerFound as exc:
        if exc.by_id:
            raise S3Error("InvalidRequest", "The source of a copy request may not specifically refer to a delete "
                          "marker by version id.") from exc
        raise S3Error("NoSuchKey", "The specified key does not exist.", extra={"Key": source_of.key}) from exc
    except NotFound as exc:
        if source_of.version_id is not None and not isinstance(exc, FileNotFound):
            raise S3Error("NoSuchVersion", "The specified version does not exist.",
                          extra={"Key": source_of.key, "VersionId": source_of.version_id}) from exc
        raise S3Error("NoSuchKey", "The specified key does not exist.", extra={"Key": source_of.key}) from exc


def _copy_range(value: str | None, size: int) -> tuple[int, int]:
    """(offset, length) of `x-amz-copy-source-range: bytes=FIRST-LAST` (length 0: the whole source)."""
    if value is None:
        return 0, 0
    found = _COPY_RANGE.fullmatch(value.strip())
    if found is None:
        raise S3Error("InvalidArgument", "The x-amz-copy-source-range value must be of the form bytes=first-last "
                      "where first and last are the zero-based offsets of the first and last bytes to copy",
                      extra={"ArgumentName": "x-amz-copy-source-range", "ArgumentValue": value[:200]})
    first, last = int(found[1]), int(found[2])
    if first > last or last >= size:
        raise S3Error("InvalidArgument", f"Range specified is not valid for source object of size: {size}",
                      extra={"ArgumentName": "x-amz-copy-source-range", "ArgumentValue": value[:200]})
    return first, last - first + 1


async def list_parts(services: S3Services, call: S3Call) -> web.StreamResponse:
    await services.buckets.get(call.bucket)
    name = object_name(call.bucket, call.key)
    upload_id = _upload_id(call)
    max_parts = _count(call, "max-parts", MAX_LISTED, MAX_LISTED)
    marker = _count(call, "part-number-marker", 0, MAX_PARTS)
    _, parts, truncated = await services.files.multipart.list_parts(upload_id, name, marker, max_parts)
    entries = [doc.PartEntry(p.part_number, p.created_at, p.etag, p.size, p.checksums) for p in parts]
    body = doc.list_parts(call.bucket, call.key, upload_id, services.owner, marker=marker, max_parts=max_parts,
                          parts=entries, truncated=truncated)
    return web.Response(body=body, content_type=xmldoc.CONTENT_TYPE)


async def list_multipart_uploads(services: S3Services, call: S3Call) -> web.StreamResponse:
    await services.buckets.get(call.bucket)
    encoding = call.query.get("encoding-type")
    if encoding is not None and encoding != "url":
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request",
                      extra={"ArgumentName": "encoding-type", "ArgumentValue": encoding[:100]})
    prefix = call.query.get("prefix", "")
    delimiter = call.query.get("delimiter", "")
    key_marker = call.query.get("key-marker", "")
    upload_id_marker = call.query.get("upload-id-marker", "")
    max_uploads = _count(call, "max-uploads", MAX_LISTED, MAX_LISTED)
    base = bucket_prefix(call.bucket)
    page = await services.files.multipart.list_uploads(base + prefix, delimiter, base + key_marker if key_marker
                                                       else "", upload_id_marker, max_uploads)
    body = doc.list_uploads(
        call.bucket, services.owner, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
        upload_id_marker=upload_id_marker if key_marker else "", max_uploads=max_uploads,
        uploads=[doc.UploadEntry(key_of(call.bucket, u.name), u.upload_id, u.created_at) for u in page.uploads],
        common_prefixes=[key_of(call.bucket, p) for p in page.prefixes], truncated=page.truncated,
        next_key_marker=key_of(call.bucket, page.next_key_marker) if page.next_key_marker else "",
        next_upload_id_marker=page.next_upload_id_marker, url_encoded=encoding == "url",
    )
    return web.Response(body=body, content_type=xmldoc.CONTENT_TYPE)


async def complete_multipart_upload(services: S3Services, call: S3Call) -> web.StreamResponse:
    """`If-None-Match: *` (create only) and `If-Match: ETAG` are judged as PutObject's are: once here,
    and again inside the commit, so of two racing conditional writes of a key one wins; a refused
    completion leaves the upload open with its parts."""
    bucket = await services.buckets.get(call.bucket)
    name = object_name(call.bucket, call.key)
    upload_id = _upload_id(call)
    chosen = doc.parse_complete(
        await read_document(call.request, call.auth, call.head, services.idle_s, xmldoc.MAX_REQUEST_XML)
    )
    if_latest = await _completion_condition(services, call, upload_id, name)
    record = await services.files.multipart.complete(
        upload_id, name, chosen, lambda combined: multipart_metadata(combined.etag, combined.sha256),
        null_version=bucket.versioning == SUSPENDED, if_latest=if_latest,
    )
    etag = etag_of(record.metadata, record.sha256)
    location = f"{call.request.scheme}://{call.request.host}/{call.bucket}/{quote(call.key, safe='/')}"
    return web.Response(body=doc.complete_result(location, call.bucket, call.key, etag),
                        headers={"x-amz-version-id": s3_version_id(record)}, content_type=xmldoc.CONTENT_TYPE)


async def abort_multipart_upload(services: S3Services, call: S3Call) -> web.StreamResponse:
    await services.buckets.get(call.bucket)
    await services.files.multipart.abort(_upload_id(call), object_name(call.bucket, call.key))
    return web.Response(status=204)


async def _completion_condition(services: S3Services, call: S3Call, upload_id: str, name: str) -> str | None:
    """The completion's condition (`write_condition`), judged once the upload is known to exist, so
    that a missing upload is `NoSuchUpload` whatever the key holds, as in S3."""
    if call.header("if-none-match") is None and call.header("if-match") is None:
        return None
    await services.files.multipart.get(upload_id, name)
    return await write_condition(services, call, name)


def _upload_id(call: S3Call) -> str:
    return call.query.get("uploadId", "")


def _part_number(call: S3Call) -> int:
    value = call.query.get("partNumber", "")
    if not value.isdigit() or not 1 <= int(value) <= MAX_PARTS:
        raise S3Error("InvalidArgument", f"Part number must be an integer between 1 and {MAX_PARTS}, inclusive",
                      extra={"ArgumentName": "partNumber", "ArgumentValue": value[:20]})
    return int(value)


def _count(call: S3Call, parameter: str, default: int, cap: int) -> int:
    """A non-negative integer parameter; a larger one counts as `cap` (S3 caps max-parts so)."""
    value = call.query.get(parameter)
    if value is None:
        return default
    if not value.strip().isdigit() or len(value.strip()) > 10:
        raise S3Error("InvalidArgument", f"Provided {parameter} not an integer or within integer range",
                      extra={"ArgumentName": parameter, "ArgumentValue": value[:20]})
    return min(int(value), cap)


def _declared_size(call: S3Call) -> int | None:
    """The part's size as the request declared it before its body (None: not declared)."""
    header = "x-amz-decoded-content-length" if call.auth.payload_mode.streaming else "content-length"
    value = call.header(header)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise S3Error("InvalidArgument", f"{header} must be a non-negative integer.")
    return int(value)
