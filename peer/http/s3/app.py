"""The S3 API's aiohttp application: one handler for every path, one middleware for every answer.

A request is read as the client signed it (raw target, raw headers), named (`peer.s3.operations`),
authenticated and checked against the operation's role, then handed to the operation's handler,
which calls the file and bucket services. The middleware gives each request one id, sent back as
`x-amz-request-id` and written in the request's log line, and turns whatever a handler raises into
S3's XML error once: `S3Error` as it is, `DfsError` through the table of `peer.http.s3.errors`,
anything else as `InternalError` (logged with its traceback). An operation not served here is
`NotImplemented` (501), never a 500 or a dropped connection.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from peer.errors import DfsError
from peer.files import FileService
from peer.files.buckets import BucketService
from peer.http.s3 import buckets, multipart, objects, versions
from peer.http.s3.auth import KeyLookup, S3Authenticator
from peer.http.s3.call import S3Call, S3Services, parse_target
from peer.http.s3.errors import error_answer, s3_error_of
from peer.http.server import Mount
from peer.logs import ACCESS_LOGGER, REQUEST_ID
from peer.metrics import PeerMetrics
from peer.s3 import RequestHead, S3Error
from peer.s3.operations import Operation, resolve
from peer.s3.xmldoc import Owner

__all__ = ["OWNER", "s3_app"]

log = logging.getLogger(__name__)
access = logging.getLogger(ACCESS_LOGGER)

OWNER = Owner("dfs", "dfs")
"""The owner every bucket and object reports: access is by role, not by owner."""

Handler = Callable[[S3Services, S3Call], Awaitable[web.StreamResponse]]

_HANDLERS: dict[str, Handler] = {
    "ListBuckets": buckets.list_buckets,
    "CreateBucket": buckets.create_bucket,
    "HeadBucket": buckets.head_bucket,
    "DeleteBucket": buckets.delete_bucket,
    "GetBucketLocation": buckets.get_bucket_location,
    "GetBucketVersioning": buckets.get_bucket_versioning,
    "PutBucketVersioning": buckets.put_bucket_versioning,
    "GetBucketAcl": buckets.get_bucket_acl,
    "ListObjects": buckets.list_objects,
    "ListObjectsV2": buckets.list_objects_v2,
    "DeleteObjects": buckets.delete_objects,
    "ListObjectVersions": versions.list_object_versions,
    "PutObject": objects.put_object,
    "GetObject": objects.get_object,
    "HeadObject": objects.head_object,
    "DeleteObject": objects.delete_object,
    "GetObjectAcl": objects.get_object_acl,
    "CopyObject": objects.copy_object,
    "CreateMultipartUpload": multipart.create_multipart_upload,
    "UploadPart": multipart.upload_part,
    "UploadPartCopy": multipart.upload_part_copy,
    "ListParts": multipart.list_parts,
    "ListMultipartUploads": multipart.list_multipart_uploads,
    "CompleteMultipartUpload": multipart.complete_multipart_upload,
    "AbortMultipartUpload": multipart.abort_multipart_upload,
}

_REQUEST_ID = web.RequestKey("request_id", str)
_OPERATION = web.RequestKey("operation", Operation)


#: S3 error codes that mean the caller's credentials were refused, counted as authentication failures.
AUTH_FAILURES = frozenset({
    "AccessDenied", "AuthorizationHeaderMalformed", "AuthorizationQueryParametersError", "InvalidAccessKeyId",
    "RequestTimeTooSkewed", "SignatureDoesNotMatch", "ExpiredToken",
})


class _S3Api:
    def __init__(self, services: S3Services, auth: S3Authenticator, domain: str, metrics: PeerMetrics | None,
                 access_log: bool = True) -> None:
        self._services = services
        self._auth = auth
        self._domain = domain
        self._metrics = metrics
        self._access_log = access_log

    async def handle(self, request: web.Request) -> web.StreamResponse:
        head = RequestHead.from_target(request.method, request.raw_path, _decoded(request.raw_headers))
        target = parse_target(head, self._domain)
        operation = resolve(request.method, target.bucket, target.key, target.query,
                            head.header("x-amz-copy-source") is not None)
        request[_OPERATION] = operation
        auth = await self._auth.authenticate(head, operation)
        handler = _HANDLERS.get(operation.name) if operation.implemented else None
        if handler is None:
            raise S3Error("NotImplemented", f"{operation.name} is not implemented by this server.")
        call = S3Call(request, head, target, operation, auth, request[_REQUEST_ID])
        return await handler(self._services, call)

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        request_id = secrets.token_hex(8).upper()
        request[_REQUEST_ID] = request_id
        REQUEST_ID.set(request_id)  # on every log line written while this request is handled
        started = time.monotonic()
        code = ""
        try:
            answer = await handler(request)
        except (S3Error, DfsError) as exc:
            error = exc if isinstance(exc, S3Error) else s3_error_of(exc)
            if error.code == "InternalError":
                log.error("%s internal error: %s", request_id, exc)
            code = error.code
            answer = error_answer(request.method, error, _resource(request), request_id)
        except Exception:
            log.exception("%s %s %s failed", request_id, request.method, _resource(request))
            code = "InternalError"
            answer = error_answer(request.method, S3Error("InternalError", "We encountered an internal error."),
                                  _resource(request), request_id)
        operation: Operation | None = request.get(_OPERATION)
        name = operation.name if operation else request.method
        seconds = time.monotonic() - started
        if self._access_log:  # the access log's line, as for gRPC calls (--no-access-log: none)
            access.info("s3 %s %s %s -> %d%s (%.1f ms)", request_id, name,
                        _resource(request), answer.status, f" {code}" if code else "", seconds * 1000)
        if self._metrics is not None:
            self._metrics.count_request("s3", name, str(answer.status), seconds, request.content.total_bytes,
                                        _sent(answer))
            if code in AUTH_FAILURES:
                self._metrics.auth_failed("s3", code)
        return answer


def _sent(answer: web.StreamResponse) -> int:
    """Body bytes of the answer: written so far for a streamed one, the body's length for the rest."""
    if isinstance(answer, web.Response) and not answer.prepared:
        return answer.content_length or 0
    return answer.body_length


async def _identify(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer, streamed ones included, carries the request's id (on_response_prepare)."""
    request_id = request.get(_REQUEST_ID)
    if request_id is not None:
        response.headers["x-amz-request-id"] = request_id
        response.headers["x-amz-id-2"] = request_id


def _decoded(raw_headers: tuple[tuple[bytes, bytes], ...]) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("utf-8", errors="replace")) for name, value in raw_headers]


def _resource(request: web.Request) -> str:
    return request.raw_path.partition("?")[0]


def s3_app(files: FileService, bucket_service: BucketService, keys: KeyLookup | None, *, no_auth: bool,
           domain: str = "", idle_s: float = 60.0, clock: Callable[[], float] = time.time,
           metrics: PeerMetrics | None = None, access_log: bool = True) -> Mount:
    """The S3 API over `files` and `bucket_service`, answering every path of its own listener.

    `keys` gives an access key's secret and role (None: no key is valid); with `no_auth` any
    credentials, or none, are accepted. `domain` turns on virtual-hosted style (`BUCKET.DOMAIN`);
    path style is always served. `idle_s` bounds a silent upload and a reader that stopped reading."""
    services = S3Services(files, bucket_service, OWNER, idle_s)
    api = _S3Api(services, S3Authenticator(keys, no_auth=no_auth, clock=clock), domain.strip("."), metrics,
                 access_log)
    app = web.Application(middlewares=[api.middleware])
    app.on_response_prepare.append(_identify)
    app.router.add_route("*", "/{path:.*}", api.handle)
    return Mount("", app)
