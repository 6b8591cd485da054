"""Parsing what a SigV4 client claims: the Authorization header or the presigned-URL query parameters.

This module only reads and validates the claim (who, when, which headers, which signature); it
checks no signature and no clock. A claim that cannot be read is refused with the error S3 gives for
its carrier: `AuthorizationHeaderMalformed` for the header, `AuthorizationQueryParametersError` for
the query, and `InvalidRequest` for a mechanism other than AWS4-HMAC-SHA256 (SigV2, SigV4a).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from peer.s3.canonical import ALGORITHM, SCOPE_TERMINATOR
from peer.s3.errors import S3Error
from peer.s3.request import RequestHead

AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600
"""S3 refuses presigned URLs valid for more than seven days."""

PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_ErrorFactory = Callable[[str], S3Error]
"""The two error constructors at the bottom, so one parser serves the header and the query."""
_UNSUPPORTED = "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."


@dataclass(frozen=True)
class Credential:
    """`<access key id>/<yyyymmdd>/<region>/<service>/aws4_request`."""

    access_key_id: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{SCOPE_TERMINATOR}"


@dataclass(frozen=True)
class Claim:
    """What the client says it signed, before anything is checked against a secret or a clock."""

    credential: Credential
    signed_headers: str
    """The SignedHeaders value as sent: it goes into the canonical request verbatim."""
    signature: str
    amz_date: str
    """The request time in the ISO 8601 basic form the string to sign carries."""
    request_time: dt.datetime
    presigned: bool
    expires_s: int | None = None
    """Presigned URLs only: how long after `request_time` the URL stays valid."""

    @property
    def header_names(self) -> Sequence[str]:
        return [name.lower() for name in self.signed_headers.split(";")]


def parse_header_claim(head: RequestHead, authorization: str) -> Claim:
    """Read an `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` header."""
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise S3Error("InvalidRequest", _UNSUPPORTED)
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, value = part.strip().partition("=")
        if not eq or name in fields:
            raise _header_malformed(f"the authorization component {part.strip()!r} is malformed.")
        fields[name] = value
    for required in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(required):
            raise _header_malformed(f"the {required} is missing.")
    amz_date, request_time = _header_time(head)
    credential = _parse_credential(fields["Credential"], amz_date, _header_malformed)
    return Claim(
        credential=credential,
        signed_headers=_check_signed_headers(fields["SignedHeaders"], _header_malformed),
        signature=_check_signature(fields["Signature"], _header_malformed),
        amz_date=amz_date,
        request_time=request_time,
        presigned=False,
    )


def parse_query_claim(params: dict[str, list[str]]) -> Claim:
    """Read the X-Amz-* parameters of a presigned URL (decoded names to every value received)."""
    if any(len(params.get(name, ())) > 1 for name in PRESIGN_PARAMS):
        raise _query_error("Each X-Amz-* authentication parameter may appear only once.")
    values = {name: params[name][0] for name in PRESIGN_PARAMS if params.get(name) and params[name][0]}
    if len(values) != len(PRESIGN_PARAMS):
        raise _query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
            "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
        )
    if values["X-Amz-Algorithm"] != ALGORITHM:
        raise _query_error('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    amz_date = values["X-Amz-Date"]
    request_time = parse_amz_date(amz_date)
    if request_time is None:
        raise _query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    return Claim(
        credential=_parse_credential(values["X-Amz-Credential"], amz_date, _query_error),
        signed_headers=_check_signed_headers(values["X-Amz-SignedHeaders"], _query_error),
        signature=_check_signature(values["X-Amz-Signature"], _query_error),
        amz_date=amz_date,
        request_time=request_time,
        presigned=True,
        expires_s=_parse_expires(values["X-Amz-Expires"]),
    )


def parse_amz_date(value: str) -> dt.datetime | None:
    if not _AMZ_DATE.fullmatch(value):
        return None
    try:
        return dt.datetime.strptime(value, AMZ_DATE_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _header_time(head: RequestHead) -> tuple[str, dt.datetime]:
    """The request time from X-Amz-Date, or from Date when X-Amz-Date is absent (both are allowed)."""
    amz_date = head.header("x-amz-date")
    if amz_date is not None:
        parsed = parse_amz_date(amz_date.strip())
        if parsed is not None:
            return amz_date.strip(), parsed
    else:
        date = head.header("date")
        parsed = _parse_http_date(date) if date else None
        if parsed is not None:
            return parsed.strftime(AMZ_DATE_FORMAT), parsed
    raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")


def _parse_http_date(value: str) -> dt.datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _parse_credential(value: str, amz_date: str, error: _ErrorFactory) -> Credential:
    parts = value.split("/")
    if len(parts) != 5 or not all(parts) or parts[4] != SCOPE_TERMINATOR:
        raise error('the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".')
    credential = Credential(access_key_id=parts[0], date=parts[1], region=parts[2], service=parts[3])
    if credential.service != "s3":
        raise error(f"the service '{credential.service}' is wrong; expecting 's3'.")
    if credential.date != amz_date[:8]:
        raise error(f"Invalid credential date '{credential.date}'. Date is not the same as X-Amz-Date.")
    return credential


def _check_signed_headers(value: str, error: _ErrorFactory) -> str:
    names = value.split(";")
    if not all(names) or any(name != name.strip() or " " in name for name in names):
        raise error(f"the SignedHeaders '{value}' are malformed.")
    if "host" not in (name.lower() for name in names):
        raise error("the SignedHeaders must include host.")
    return value


def _check_signature(value: str, error: _ErrorFactory) -> str:
    if not _SIGNATURE.fullmatch(value):
        raise error("the Signature must be 64 lower-case hexadecimal characters.")
    return value


def _parse_expires(value: str) -> int:
    if not value.isdigit():
        if value.startswith("-") and value[1:].isdigit():
            raise _query_error("X-Amz-Expires must be non-negative")
        raise _query_error("X-Amz-Expires should be a number")
    expires = int(value)
    if expires > MAX_PRESIGN_EXPIRES_S:
        raise _query_error("X-Amz-Expires must be less than a week (in seconds) that is; 604800")
    return expires


def _header_malformed(detail: str) -> S3Error:
    return S3Error("AuthorizationHeaderMalformed", f"The authorization header is malformed; {detail}")


def _query_error(detail: str) -> S3Error:
    return S3Error("AuthorizationQueryParametersError", detail)
