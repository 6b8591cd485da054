"""The one table from the product's errors to S3's, and the XML error answer, applied at the edge only.

Handlers raise `S3Error` (the S3 core's refusals, and the edge's own) or a `DfsError` from the file
service, and never answer an error themselves: `error_answer` does it once, for both. A DfsError
becomes the S3 code of its class below; one that is not listed is a fault of the peer, answered
`InternalError` (500) and logged. HEAD answers carry the status alone, as S3's do.
"""

from __future__ import annotations

from aiohttp import web

from peer import errors
from peer.s3 import S3Error, xmldoc

__all__ = ["error_answer", "s3_error_of"]

_CODES: list[tuple[type[errors.DfsError], str]] = [
    (errors.BucketNotFound, "NoSuchBucket"),
    (errors.UploadNotFound, "NoSuchUpload"),
    (errors.NotFound, "NoSuchKey"),
    (errors.BucketExists, "BucketAlreadyOwnedByYou"),
    (errors.BucketNotEmpty, "BucketNotEmpty"),
    (errors.TooLarge, "EntityTooLarge"),
    (errors.InvalidPart, "InvalidPart"),
    (errors.InvalidPartOrder, "InvalidPartOrder"),
    (errors.PartTooSmall, "EntityTooSmall"),
    (errors.InvalidRequest, "InvalidArgument"),
    (errors.Unauthenticated, "AccessDenied"),
    (errors.PermissionDenied, "AccessDenied"),
    (errors.ClientTooSlow, "RequestTimeout"),
    (errors.InsufficientReplicas, "ServiceUnavailable"),
    (errors.PeerUnavailable, "ServiceUnavailable"),
    (errors.ChunkUnreachable, "ServiceUnavailable"),
    (errors.MetadataUnavailable, "ServiceUnavailable"),
    (errors.StorageFull, "ServiceUnavailable"),
    (errors.VersionConflict, "OperationAborted"),
    (errors.PreconditionFailed, "PreconditionFailed"),
]


def s3_error_of(exc: errors.DfsError) -> S3Error:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return S3Error(code, str(exc))
    return S3Error("InternalError", f"We encountered an internal error ({exc.kind}): {exc}")


def error_answer(method: str, error: S3Error, resource: str, request_id: str) -> web.Response:
    headers = {"Content-Type": xmldoc.CONTENT_TYPE, **error.headers}
    if error.code == "InvalidRange" and "ActualObjectSize" in error.extra:
        headers["Content-Range"] = f"bytes */{error.extra['ActualObjectSize']}"
    body = xmldoc.error_document(error.code, error.message, resource, request_id, error.extra.items())
    if method == "HEAD":
        return web.Response(status=error.status, headers=headers)
    return web.Response(status=error.status, body=body, headers=headers)
