"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, CopyObject, GetObjectAcl.

An object is the file `BUCKET/KEY` (peer/s3/names.py). PutObject streams the body into
`FileService.put` piece by piece, and its proof of completeness is the declared size (Content-Length,
or x-amz-decoded-content-length for an aws-chunked body) plus the body reader's verdict: the version
is committed only after the whole body arrived and matched every digest it declared, so a refused
or broken upload stores nothing. GetObject streams verified pieces as the download service yields
them; an error once the answer has begun can no longer be an XML document, so the connection is
closed and the client sees fewer bytes than Content-Length announced.

A conditional PutObject (`If-None-Match: *`, `If-Match`) is judged twice: before the body is read,
so a doomed upload stores nothing, and again inside the metadata commit (NewVersion.if_latest), so
of two racing create-only PUTs exactly one is written. CopyObject commits a new version that
references the source's chunks (FileService.copy): no byte is read or written, unless the copy's
storage class (its `x-amz-storage-class`, else the bucket's default) is stored with another
redundancy policy than the source, whose bytes are then written again under it. Versions, delete
markers and the `null` version are peer.http.s3.versions'.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from peer.errors import ClientTooSlow, DeleteMarkerFound, FileNotFound, NotFound
from peer.files import Trailer, UploadProof
from peer.http.s3.bodies import ObjectBody
from peer.http.s3.call import S3Call, S3Services, storage_policy
from peer.http.s3.versions import (
    NULL_VERSION,
    SUSPENDED,
    delete_key,
    deletion_headers,
    s3_version_id,
    version_spec,
)
from peer.metadata.store import FileRefSpec, VersionRecord, VersionSpec
from peer.s3 import S3Error, stored_content_encoding, xmldoc
from peer.s3.conditions import (
    Outcome,
    check_copy_preconditions,
    check_preconditions,
    etag_matches,
    http_date,
    parse_range,
    precondition_failed,
)
from peer.s3.names import object_name, parse_copy_source
from peer.s3.objectmeta import (
    checksum_headers,
    completed_metadata,
    content_metadata,
    etag_of,
    response_headers,
    stored_metadata,
)
from peer.s3.storageclass import STANDARD, storage_class_of
from peer.transfer.download import Piece

__all__ = ["copy_object", "delete_object", "get_object", "get_object_acl", "head_object", "put_object",
           "write_condition"]

log = logging.getLogger(__name__)

_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


async def put_object(services: S3Services, call: S3Call) -> web.StreamResponse:
    bucket = await services.buckets.get(call.bucket)
    name = object_name(call.bucket, call.key)
    policy = storage_policy(call, bucket)
    if_latest = await write_condition(services, call, name)
    body = ObjectBody(call.request, call.auth, call.head, services.idle_s)
    proof = UploadProof(declared=_declared_size(call))

    async def data() -> AsyncIterator[bytes | memoryview]:
        async for piece in body.pieces():
            yield piece
        assert body.size is not None
        proof.trailer = Trailer(body.size)  # every byte arrived, in the framing it declared

    def late(sha256: str) -> dict[str, str]:
        result = body.verify(sha256)  # every digest the body declared, before the commit
        return completed_metadata(result.md5, result.checksums)

    encoding = stored_content_encoding(call.header("content-encoding"))
    metadata = stored_metadata(call.head.header_values, call.header, encoding)
    record = await services.files.put(name, data(), proof, content_type=call.header("content-type") or "",
                                      user_metadata=metadata, late_metadata=late, tap=body.tap,
                                      null_version=bucket.versioning == SUSPENDED, if_latest=if_latest,
                                      policy=policy)
    headers = {"ETag": f'"{etag_of(record.metadata, record.sha256)}"', "x-amz-version-id": s3_version_id(record)}
    assert body.result is not None
    for algorithm, value in body.result.checksums.items():
        headers[f"x-amz-checksum-{algorithm}"] = value
    return web.Response(status=200, headers=headers)


async def write_condition(services: S3Services, call: S3Call, name: str) -> str | None:
    """The commit's condition on the key's latest version (NewVersion.if_latest) for `If-None-Match: *`
    (create-only: "") or `If-Match: ETAG` (that version's id); None for an unconditional write
    (PutObject, CompleteMultipartUpload). Judged here first, so a write that cannot succeed is
    refused before its body is read (or its parts joined): 412 `PreconditionFailed`, or `NoSuchKey`
    for `If-Match` on a key with no current object, as S3 answers."""
    if_none_match = call.header("if-none-match")
    if_match = call.header("if-match")
    if if_none_match is None and if_match is None:
        return None
    if if_none_match is not None and if_none_match.strip() != "*":
        raise S3Error("NotImplemented", f"{call.operation.name} takes If-None-Match only as \"*\" (create only).")
    try:
        current: VersionRecord | None = await services.files.stat(FileRefSpec(name=name), VersionSpec())
    except FileNotFound:
        current = None
    if if_none_match is not None:
        if current is not None:
            raise precondition_failed("If-None-Match")
        if if_match is None:
            return ""
    if current is None:
        raise S3Error("NoSuchKey", "The specified key does not exist.", extra={"Key": call.key})
    if not etag_matches(if_match or "", etag_of(current.metadata, current.sha256)):
        raise precondition_failed("If-Match")
    return current.version_id


def _declared_size(call: S3Call) -> int | None:
    """The object's size as the request declared it before its body (None: not declared)."""
    header = "x-amz-decoded-content-length" if call.auth.payload_mode.streaming else "content-length"
    value = call.header(header)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise S3Error("InvalidArgument", f"{header} must be a non-negative integer.")
    return int(value)


async def head_object(services: S3Services, call: S3Call) -> web.StreamResponse:
    return await _read_object(services, call, head_only=True)


async def get_object(services: S3Services, call: S3Call) -> web.StreamResponse:
    return await _read_object(services, call, head_only=False)


async def _read_object(services: S3Services, call: S3Call, *, head_only: bool) -> web.StreamResponse:
    await services.buckets.get(call.bucket)
    ref = FileRefSpec(name=object_name(call.bucket, call.key))
    try:
        spec = await version_spec(services.files, ref.name or "", call.query.get("versionId"))
        record, _, pieces = await services.files.open(ref, spec, 0, 0)
    except NotFound as exc:
        raise _not_found(call, exc) from exc
    try:
        etag = etag_of(record.metadata, record.sha256)
        headers = _object_headers(record, etag)
        if check_preconditions(call.header, etag, record.created_at) is Outcome.NOT_MODIFIED:
            return web.Response(status=304, headers=[(k, v) for k, v in headers if k in _NOT_MODIFIED_HEADERS])
        span = parse_range(call.header("range"), record.size)
        if span is None:
            if (call.header("x-amz-checksum-mode") or "").upper() == "ENABLED":
                headers += checksum_headers(record.metadata, record.sha256)
        else:
            headers.append(("Content-Range", span.content_range))
        if not head_only:
            headers += [(_OVERRIDES[name], value) for name, value in call.query.items() if name in _OVERRIDES]
        answer = web.StreamResponse(status=200 if span is None else 206)
        for name, value in headers:
            answer.headers[name] = value
        answer.content_length = record.size if span is None else span.length
        if head_only or answer.content_length == 0:
            await answer.prepare(call.request)
            await answer.write_eof()
            return answer
        if span is not None and span.length != record.size:
            await _close(pieces)
            pinned = VersionSpec(version_id=record.version_id)
            _, _, pieces = await services.files.open(ref, pinned, span.offset, span.length)
        await _stream(call, answer, pieces, services.idle_s)
        return answer
    finally:
        await _close(pieces)


_NOT_MODIFIED_HEADERS = frozenset({"ETag", "Last-Modified", "x-amz-version-id", "Cache-Control", "Expires"})


def _object_headers(record: VersionRecord, etag: str) -> list[tuple[str, str]]:
    headers = response_headers(record.metadata, record.content_type)
    headers += [
        ("ETag", f'"{etag}"'),
        ("Last-Modified", http_date(record.created_at)),
        ("Accept-Ranges", "bytes"),
        ("x-amz-version-id", s3_version_id(record)),
    ]
    storage_class = storage_class_of(record.policy)
    if storage_class != STANDARD:  # as S3: STANDARD goes without the header
        headers.append(("x-amz-storage-class", storage_class))
    return [(_canonical_case(name), value) for name, value in headers]


def _canonical_case(name: str) -> str:
    """`cache-control` as `Cache-Control`; x-amz-* and names already cased stay as they are."""
    if name.startswith("x-amz-") or name != name.lower():
        return name
    return "-".join(part.capitalize() for part in name.split("-"))


async def _stream(call: S3Call, answer: web.StreamResponse, pieces: AsyncIterator[Piece], idle_s: float) -> None:
    """Writes the pieces. A failure before the first piece is still an S3 error answer; after the
    status line went out, it closes the connection, and a client that went away ends the answer."""
    piece = await anext(pieces, None)
    await answer.prepare(call.request)
    try:
        while piece is not None:
            async with asyncio.timeout(idle_s):
                await answer.write(piece.data)
            piece = await anext(pieces, None)
        await answer.write_eof()
    except TimeoutError:
        _abort(call, ClientTooSlow(f"the client read nothing for {idle_s:g} s"))
    except ConnectionError as exc:
        log.info("%s GetObject %s/%s: the client went away (%s)", call.request_id, call.bucket, call.key, exc)
    except Exception as exc:  # noqa: BLE001 - the answer has begun: it can only be cut short
        _abort(call, exc)


def _abort(call: S3Call, exc: BaseException) -> None:
    log.error("%s GetObject %s/%s cut short after the answer began: %s", call.request_id, call.bucket, call.key, exc)
    transport = call.request.transport
    if transport is not None:
        transport.close()


async def _close(pieces: AsyncIterator[Piece]) -> None:
    close = getattr(pieces, "aclose", None)
    if close is not None:
        await close()


async def delete_object(services: S3Services, call: S3Call) -> web.StreamResponse:
    bucket = await services.buckets.get(call.bucket)
    name = object_name(call.bucket, call.key)
    deletion = await delete_key(services.files, bucket.versioning, name, call.query.get("versionId"))
    return web.Response(status=204, headers=deletion_headers(deletion))


async def copy_object(services: S3Services, call: S3Call) -> web.StreamResponse:
    """A new version of the target with the source version's chunks, size and SHA-256; metadata from
    the source (`x-amz-metadata-directive: COPY`, the default) or from the request (`REPLACE`), the
    ETag and checksums, which describe the content, kept either way."""
    bucket = await services.buckets.get(call.bucket)
    target = object_name(call.bucket, call.key)
    source_of = parse_copy_source(call.header("x-amz-copy-source") or "")
    await services.buckets.get(source_of.bucket)
    source_name = object_name(source_of.bucket, source_of.key)
    directive = (call.header("x-amz-metadata-directive") or "COPY").strip().upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.",
                      extra={"ArgumentName": "x-amz-metadata-directive", "ArgumentValue": directive[:100]})
    policy = storage_policy(call, bucket)  # S3: a copy is of its own class, STANDARD unless it names one
    changes_class = call.header("x-amz-storage-class") is not None
    if target == source_name and source_of.version_id is None and directive == "COPY" and not changes_class:
        raise S3Error("InvalidRequest", "This copy request is illegal because it is trying to copy an object to "
                      "itself without changing the object's metadata, storage class, website redirect location or "
                      "encryption attributes.")
    try:
        spec = await version_spec(services.files, source_name, source_of.version_id)
        source = await services.files.stat(FileRefSpec(name=source_name), spec)
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
    etag = etag_of(source.metadata, source.sha256)
    check_copy_preconditions(call.header, etag, source.created_at)
    if directive == "COPY":
        content_type, metadata = source.content_type, dict(source.metadata)
    else:
        content_type = call.header("content-type") or ""
        metadata = {**stored_metadata(call.head.header_values, call.header, call.header("content-encoding")),
                    **content_metadata(source.metadata)}
    record = await services.files.copy(source, target, content_type=content_type, metadata=metadata,
                                       null_version=bucket.versioning == SUSPENDED, policy=policy)
    headers = {"x-amz-version-id": s3_version_id(record), "x-amz-copy-source-version-id": s3_version_id(source)}
    return web.Response(body=xmldoc.copy_object_result(etag, record.created_at), headers=headers,
                        content_type=xmldoc.CONTENT_TYPE)


async def get_object_acl(services: S3Services, call: S3Call) -> web.StreamResponse:
    await services.buckets.get(call.bucket)
    name = object_name(call.bucket, call.key)
    try:
        spec = await version_spec(services.files, name, call.query.get("versionId"))
        await services.files.stat(FileRefSpec(name=name), spec)
    except NotFound as exc:
        raise _not_found(call, exc) from exc
    return web.Response(body=xmldoc.access_control_policy(services.owner), content_type=xmldoc.CONTENT_TYPE)


def _not_found(call: S3Call, exc: NotFound) -> S3Error:
    if isinstance(exc, DeleteMarkerFound):
        headers = {"x-amz-delete-marker": "true",
                   "x-amz-version-id": NULL_VERSION if exc.null_version else exc.version_id}
        if exc.by_id:  # a marker has no content to read: S3 answers 405, naming the one method it takes
            return S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.",
                           extra={"Method": call.request.method, "ResourceType": "DeleteMarker"},
                           headers={**headers, "Allow": "DELETE"})
        return S3Error("NoSuchKey", "The specified key does not exist.", extra={"Key": call.key}, headers=headers)
    if call.query.get("versionId") is not None and not isinstance(exc, FileNotFound):
        return S3Error("NoSuchVersion", "The specified version does not exist.",
                       extra={"Key": call.key, "VersionId": call.query["versionId"]})
    return S3Error("NoSuchKey", "The specified key does not exist.", extra={"Key": call.key})
