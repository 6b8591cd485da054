"""The one error type of the S3 API: an S3 error code, its HTTP status and a message.

Everything under `peer.s3` raises `S3Error` and nothing else for a bad request, so the HTTP edge maps
errors to the wire exactly once: the code and message go into the XML `<Error>` document, the status
onto the response, and `extra` adds the elements S3 puts beside them (for example `ServerTime` for a
skewed clock, or `StringToSign` for a signature mismatch, which lets a client debug its signer).
This module imports nothing from the rest of the peer and no web framework.
"""

from __future__ import annotations

from collections.abc import Mapping

# The S3 codes the peer answers with, and the HTTP status S3 answers each with.
STATUS_BY_CODE: Mapping[str, int] = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "BadDigest": 400,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "IllegalVersioningConfigurationException": 400,
    "IncompleteBody": 400,
    "InternalError": 500,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "InvalidStorageClass": 400,
    "KeyTooLongError": 400,
    "MalformedTrailerError": 400,
    "MalformedXML": 400,
    "MethodNotAllowed": 405,
    "MissingContentLength": 411,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NoSuchVersion": 404,
    "NotImplemented": 501,
    "OperationAborted": 409,
    "PreconditionFailed": 412,
    "RequestTimeTooSkewed": 403,
    "RequestTimeout": 400,
    "ServiceUnavailable": 503,
    "SignatureDoesNotMatch": 403,
    "XAmzContentSHA256Mismatch": 400,
}


class S3Error(Exception):
    """A request S3 would refuse, with the code and status S3 would refuse it with.

    The status comes from `STATUS_BY_CODE`, so a code and its status never disagree between call sites.
    """

    def __init__(self, code: str, message: str, *, extra: Mapping[str, str] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        if code not in STATUS_BY_CODE:
            raise ValueError(f"unknown S3 error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = STATUS_BY_CODE[code]
        self.message = message
        self.extra: Mapping[str, str] = dict(extra or {})
        self.headers: Mapping[str, str] = dict(headers or {})
        """Response headers S3 sends with this error (`x-amz-delete-marker` on a deleted key's 404)."""
