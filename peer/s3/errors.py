"""The one error type of the S3 API: an S3 error code, its HTTP status and a message.

Everything under `peer.s3` raises `S3Error` and nothing else for a bad request, so the HTTP edge maps
errors to the wire exactly once: the code and message go into the XML `<Error>` document, the status
onto the response, and `extra` adds the elements S3 puts beside them (for example `ServerTime` for a
skewed clock, or `StringToSign` for a signature mismatch, which lets a client debug its signer).
This module imports nothing from the rest of the peer and no web framework.
"""

from __future__ import annotations

from collections.abc import Mapping

# The S3 codes this package raises, with the HTTP status S3 answers them with.
STATUS_BY_CODE: Mapping[str, int] = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "BadDigest": 400,
    "IncompleteBody": 400,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidDigest": 400,
    "InvalidRequest": 400,
    "MalformedTrailerError": 400,
    "RequestTimeTooSkewed": 403,
    "SignatureDoesNotMatch": 403,
    "XAmzContentSHA256Mismatch": 400,
}


class S3Error(Exception):
    """A request S3 would refuse, with the code and status S3 would refuse it with.

    The status comes from `STATUS_BY_CODE`, so a code and its status never disagree between call sites.
    """

    def __init__(self, code: str, message: str, *, extra: Mapping[str, str] | None = None) -> None:
        if code not in STATUS_BY_CODE:
            raise ValueError(f"unknown S3 error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = STATUS_BY_CODE[code]
        self.message = message
        self.extra: Mapping[str, str] = dict(extra or {})
