"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, GetObjectAcl.

An object is the file `BUCKET/KEY` (peer/s3/names.py). PutObject streams the body into
`FileService.put` piece by piece, and its proof of completeness is the declared size (Content-Length,
or x-amz-decoded-content-length for an aws-chunked body) plus the body reader's verdict: the version
is committed only after the whole body arrived and matched every digest it declared, so a refused
or broken upload stores nothing. GetObject streams verified pieces as the download service yields
them; an error once the answer has begun can no longer be an XML document, so the connection is
closed and the client sees fewer bytes than Content-Length announced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from peer.errors import ClientTooSlow, FileNotFound, NotFound
from peer.files import Trailer, UploadProof
from peer.http.s3.bodies import ObjectBody
from peer.http.s3.call import S3Call, S3Services
from peer.metadata.store import FileRefSpec, VersionRecord, VersionSpec
from peer.s3 import S3Error, stored_content_encoding, xmldoc
from peer.s3.conditions import Outcome, check_preconditions, http_date, parse_range
from peer.s3.names import object_name
from peer.s3.objectmeta import (
    checksum_headers,
    completed_metadata,
    etag_of,
    response_headers,
    stored_metadata,
)
from peer.transfer.download import Piece

__all__ = ["delete_object", "get_object", "get_object_acl", "head_object", "put_object"]

log = logging.getLogger(__name__)

NULL_VERSION = "null"
_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


async def put_object(services: S3Services, call: S3Call) -> web.StreamResponse:
    if call.header("if-none-match") is not None or call.header("if-match") is not None:
        # refused rather than ignored: a client counting on create-only must not overwrite silently
        raise S3Error("NotImplemented", "Conditional PutObject (If-Match, If-None-Match) is not implemented yet.")
    await services.buckets.get(call.bucket)
    name = object_name(call.bucket, call.key)
    body = ObjectBody(call.request, call.auth, call.head, services.idle_s)
    proof = UploadProof(declared=_declared_size(call))

    async def data() -> AsyncIterator[bytes]:
        async for piece in body.pieces():
            yield piece
        assert body.result is not None
        proof.trailer = Trailer(body.result.size)  # every byte arrived and matched what was declared

    def late() -> dict[str, str]:
        assert body.result is not None
        return completed_metadata(body.etag, body.result.checksums)

    encoding = stored_content_encoding(call.header("content-encoding"))
    metadata = stored_metadata(call.head.header_values, call.header, encoding)
    record = await services.files.put(name, data(), proof, content_type=call.header("content-type") or "",
                                      user_metadata=metadata, late_metadata=late)
    headers = {"ETag": f'"{etag_of(record.metadata, record.sha256)}"', "x-amz-version-id": record.version_id}
    assert body.result is not None
    for algorithm, value in body.result.checksums.items():
        headers[f"x-amz-checksum-{algorithm}"] = value
    return web.Response(status=200, headers=headers)


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
        record, _, pieces = await services.files.open(ref, _version_spec(call), 0, 0)
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
        ("x-amz-version-id", record.version_id),
    ]
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


def _version_spec(call: S3Call) -> VersionSpec:
    version_id = call.query.get("versionId")
    if version_id is None:
        return VersionSpec()
    if version_id == NULL_VERSION:
        raise S3Error("NoSuchVersion", "The specified version does not exist.",
                      extra={"Key": call.key, "VersionId": version_id})
    return VersionSpec(version_id=version_id)


async def delete_object(services: S3Services, call: S3Call) -> web.StreamResponse:
    await services.buckets.get(call.bucket)
    ref = FileRefSpec(name=object_name(call.bucket, call.key))
    version_id = call.query.get("versionId")
    headers = {}
    if version_id is not None:
        headers["x-amz-version-id"] = version_id
    if version_id != NULL_VERSION:
        try:
            await services.files.delete(ref, VersionSpec(version_id=version_id) if version_id else None)
        except NotFound:
            pass  # deleting what does not exist succeeds, as in S3
    return web.Response(status=204, headers=headers)


async def get_object_acl(services: S3Services, call: S3Call) -> web.StreamResponse:
    await services.buckets.get(call.bucket)
    try:
        await services.files.stat(FileRefSpec(name=object_name(call.bucket, call.key)), _version_spec(call))
    except NotFound as exc:
        raise _not_found(call, exc) from exc
    return web.Response(body=xmldoc.access_control_policy(services.owner), content_type=xmldoc.CONTENT_TYPE)


def _not_found(call: S3Call, exc: NotFound) -> S3Error:
    if call.query.get("versionId") is not None and not isinstance(exc, FileNotFound):
        return S3Error("NoSuchVersion", "The specified version does not exist.",
                       extra={"Key": call.key, "VersionId": call.query["versionId"]})
    return S3Error("NoSuchKey", "The specified key does not exist.", extra={"Key": call.key})
