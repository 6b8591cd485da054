"""SigV4 request authentication for S3: the Authorization header and presigned URLs.

`SigV4Verifier.verify(head)` checks everything the request head can prove (credential, clock,
expiry, which headers are signed, the signature) and returns an `AuthResult` naming the access key
it authenticated. It never sees the body: the payload hash the client declared is signed here, and
the body is checked against it as it streams (see `peer.s3.body`). Roles are checked by the caller.

Checks run in the order S3 reports them: unreadable claim, unknown key, clock skew or expiry,
unsigned `x-amz-*` headers, then the signature itself, compared in constant time.
Secrets and time are injected: `secrets` maps an access key id to its secret (None when unknown),
`clock` returns wall-clock seconds since the epoch.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from peer.s3 import canonical
from peer.s3.credentials import Claim, parse_header_claim, parse_query_claim
from peer.s3.errors import S3Error
from peer.s3.request import RequestHead

SecretLookup = Callable[[str], str | None]
WallClock = Callable[[], float]

MAX_SKEW_S = 15 * 60
"""S3 refuses a request whose time is more than 15 minutes away from its own clock."""

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class PayloadMode(enum.Enum):
    """How the body is protected, from the x-amz-content-sha256 value the client signed."""

    UNSIGNED = "UNSIGNED-PAYLOAD"
    SIGNED = "signed"
    """The header holds the hex SHA-256 of the whole body."""
    STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

    @property
    def streaming(self) -> bool:
        """The body is aws-chunked framing, to be decoded before it is stored."""
        return self.value.startswith("STREAMING-")

    @property
    def chunk_signed(self) -> bool:
        return self in (PayloadMode.STREAMING_SIGNED, PayloadMode.STREAMING_SIGNED_TRAILER)

    @property
    def has_trailer(self) -> bool:
        return self in (PayloadMode.STREAMING_SIGNED_TRAILER, PayloadMode.STREAMING_UNSIGNED_TRAILER)


@dataclass(frozen=True)
class SigningContext:
    """What chunk and trailer signatures are chained from: the key, the time, the scope and the seed."""

    key: bytes
    amz_date: str
    scope: str
    seed_signature: str


@dataclass(frozen=True)
class AuthResult:
    access_key_id: str
    payload_mode: PayloadMode
    payload_sha256: str | None
    """Lower-case hex digest the body must hash to, for `PayloadMode.SIGNED` only."""
    signing: SigningContext
    presigned: bool
    verified: bool = True
    """False for `unverified`: nothing was authenticated, so there is no key to check chunk and trailer
    signatures with; the body is still decoded and its digests and checksums still verified."""


def unverified(head: RequestHead) -> AuthResult:
    """What a request declares about its body, taken without authenticating it: for a peer that runs
    without authentication (development), where any credentials, or none, are accepted."""
    declared = head.header("x-amz-content-sha256") or PayloadMode.UNSIGNED.value
    mode = _payload_mode(declared)
    query_names = {name for name, _ in canonical.parse_query(head.raw_query)}
    return AuthResult(
        access_key_id="",
        payload_mode=mode,
        payload_sha256=declared.lower() if mode is PayloadMode.SIGNED else None,
        signing=SigningContext(b"", "", "", ""),
        presigned="X-Amz-Signature" in query_names,
        verified=False,
    )


def has_credentials(head: RequestHead) -> bool:
    """Whether the request carries any authentication at all (anonymous requests carry none)."""
    query_names = {name for name, _ in canonical.parse_query(head.raw_query)}
    return head.header("authorization") is not None or bool(
        query_names & {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "Signature", "AWSAccessKeyId"}
    )


class SigV4Verifier:
    def __init__(
        self,
        secrets: SecretLookup,
        *,
        clock: WallClock = time.time,
        region: str | None = None,
        max_skew_s: float = MAX_SKEW_S,
    ) -> None:
        """`region` None accepts whatever region the client signed for (clients default to us-east-1);
        a value refuses every other region, as S3 does."""
        self._secrets = secrets
        self._clock = clock
        self._region = region
        self._max_skew_s = max_skew_s

    def claimed_access_key(self, head: RequestHead) -> str:
        """The access key id the request claims, read as `verify` reads it (an unreadable claim or an
        anonymous request raises the same `S3Error`), so a caller can fetch the key's secret before
        it verifies."""
        return self._read_claim(head).credential.access_key_id

    def verify(self, head: RequestHead) -> AuthResult:
        """Authenticate the request head, or raise the `S3Error` S3 would answer with."""
        claim = self._read_claim(head)
        secret = self._secrets(claim.credential.access_key_id)
        if secret is None:
            raise S3Error(
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
                extra={"AWSAccessKeyId": claim.credential.access_key_id},
            )
        self._check_time(claim)
        _check_amz_headers_signed(head, claim)
        content_sha256 = _declared_payload(head, claim)
        key = canonical.signing_key(secret, claim.credential.date, claim.credential.region, "s3")
        query = canonical.parse_query(head.raw_query)
        canonical_request = canonical.canonical_request(
            head.method,
            canonical.canonical_uri(head.raw_path),
            canonical.canonical_query(query, exclude={"X-Amz-Signature"} if claim.presigned else ()),
            canonical.canonical_headers(head.header_values, claim.header_names),
            claim.signed_headers,
            content_sha256,
        )
        to_sign = canonical.string_to_sign(claim.amz_date, claim.credential.scope, canonical_request)
        if not canonical.signatures_equal(canonical.sign(key, to_sign), claim.signature):
            raise S3Error(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. "
                "Check your key and signing method.",
                extra={
                    "AWSAccessKeyId": claim.credential.access_key_id,
                    "StringToSign": to_sign,
                    "SignatureProvided": claim.signature,
                    "CanonicalRequest": canonical_request,
                },
            )
        mode = _payload_mode(content_sha256)
        return AuthResult(
            access_key_id=claim.credential.access_key_id,
            payload_mode=mode,
            payload_sha256=content_sha256.lower() if mode is PayloadMode.SIGNED else None,
            signing=SigningContext(key, claim.amz_date, claim.credential.scope, claim.signature),
            presigned=claim.presigned,
        )

    def _read_claim(self, head: RequestHead) -> Claim:
        params: dict[str, list[str]] = {}
        for name, value in canonical.parse_query(head.raw_query):
            params.setdefault(name, []).append(value)
        authorization = head.header("authorization")
        if "X-Amz-Algorithm" in params or "X-Amz-Signature" in params or "X-Amz-Credential" in params:
            if authorization is not None:
                raise S3Error(
                    "InvalidArgument",
                    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature "
                    "query string parameter or the Authorization header should be specified",
                )
            claim = parse_query_claim(params)
        elif authorization is not None:
            claim = parse_header_claim(head, authorization)
        elif "Signature" in params or "AWSAccessKeyId" in params:
            raise S3Error("InvalidRequest", "Query-string authentication version 2 is not supported; use SigV4.")
        else:
            raise S3Error("AccessDenied", "Anonymous access is not allowed; sign the request with SigV4.")
        if self._region is not None and claim.credential.region != self._region:
            message = f"the region '{claim.credential.region}' is wrong; expecting '{self._region}'"
            if claim.presigned:
                raise S3Error("AuthorizationQueryParametersError", f"Error parsing the X-Amz-Credential; {message}")
            raise S3Error("AuthorizationHeaderMalformed", f"The authorization header is malformed; {message}")
        return claim

    def _check_time(self, claim: Claim) -> None:
        now = self._clock()
        signed_at = claim.request_time.timestamp()
        server_time = _format_time(now)
        if claim.presigned:
            assert claim.expires_s is not None
            if now > signed_at + claim.expires_s:
                raise S3Error(
                    "AccessDenied",
                    "Request has expired",
                    extra={
                        "X-Amz-Expires": str(claim.expires_s),
                        "Expires": _format_time(signed_at + claim.expires_s),
                        "ServerTime": server_time,
                    },
                )
            if signed_at > now + self._max_skew_s:
                raise S3Error("AccessDenied", "Request is not yet valid", extra={"ServerTime": server_time})
        elif abs(now - signed_at) > self._max_skew_s:
            raise S3Error(
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
                extra={
                    "RequestTime": claim.amz_date,
                    "ServerTime": server_time,
                    "MaxAllowedSkewMilliseconds": str(int(self._max_skew_s * 1000)),
                },
            )


def _check_amz_headers_signed(head: RequestHead, claim: Claim) -> None:
    """Every x-amz-* header changes what the request does (metadata, copy source, ACL), so each must be
    signed: otherwise anyone could add one to a request they intercepted or to a presigned URL."""
    signed = set(claim.header_names)
    unsigned = sorted(name for name in head.header_values if name.startswith("x-amz-") and name not in signed)
    if unsigned:
        raise S3Error(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            extra={"HeadersNotSigned": ", ".join(unsigned)},
        )


def _declared_payload(head: RequestHead, claim: Claim) -> str:
    """The payload hash that goes into the canonical request, as the client declared it."""
    declared = head.header("x-amz-content-sha256")
    if declared is None:
        if claim.presigned:
            return PayloadMode.UNSIGNED.value
        raise S3Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
    mode = _payload_mode(declared)
    if claim.presigned and mode.streaming:
        raise S3Error("InvalidRequest", "A presigned URL cannot carry an aws-chunked streaming payload.")
    return declared


def _payload_mode(declared: str) -> PayloadMode:
    if _SHA256_HEX.fullmatch(declared):
        return PayloadMode.SIGNED
    for mode in PayloadMode:
        if mode is not PayloadMode.SIGNED and declared == mode.value:
            return mode
    raise S3Error(
        "InvalidArgument",
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
        "or a valid sha256 value.",
        extra={"ArgumentName": "x-amz-content-sha256", "ArgumentValue": declared},
    )


def _format_time(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = [
    "MAX_SKEW_S",
    "AuthResult",
    "PayloadMode",
    "SecretLookup",
    "SigV4Verifier",
    "SigningContext",
    "WallClock",
    "has_credentials",
    "unverified",
]
