"""An object's S3 headers as the product stores them: in the version's metadata map.

User metadata (`x-amz-meta-NAME: VALUE`) is stored as the entry `name -> VALUE` (S3 lower-cases the
names), so `dfs info` shows it and `dfs upload --meta owner=ana` reads back over S3 as
`x-amz-meta-owner: ana`. Everything else S3 keeps about an object is stored under the reserved
prefix `s3:`, which no `x-amz-meta-*` header can produce (":" is not allowed in a header name):

    s3:etag                 hex MD5 of the content, computed as it arrived over S3
    s3:content-encoding     Content-Encoding, without the aws-chunked of the upload
    s3:content-disposition  Content-Disposition
    s3:content-language     Content-Language
    s3:cache-control        Cache-Control
    s3:expires              Expires, as sent
    s3:checksum-ALGORITHM   the x-amz-checksum-* value the upload carried and the data matched; for a
                            multipart object, `s3:checksum-sha256` is the composite of its parts' SHA-256s

A file uploaded without S3 has no `s3:etag`; its ETag is its SHA-256 (64 hex digits, which no client
takes for an MD5). The content type is the version's own field; none reads back as
`binary/octet-stream`, as in S3.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping

from peer.s3 import checksums

RESERVED_PREFIX = "s3:"
ETAG_KEY = RESERVED_PREFIX + "etag"
CHECKSUM_PREFIX = RESERVED_PREFIX + "checksum-"
META_HEADER_PREFIX = "x-amz-meta-"
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
STORED_HEADERS = ("content-encoding", "content-disposition", "content-language", "cache-control", "expires")
"""The standard headers an object keeps besides its content type, stored as `s3:<header>`."""

_COMPOSITE = re.compile(r"[A-Za-z0-9+/=]+-[0-9]+")
"""A checksum of checksums (a multipart object's): the base64 digest, then `-N` for N parts."""
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PLAIN_VALUE = re.compile(r"[\x20-\x7e]*")

HeaderGetter = Callable[[str], str | None]


def stored_metadata(header_names: Iterable[str], header: HeaderGetter, content_encoding: str | None) -> dict[str, str]:
    """The metadata map of an object from its PUT request's headers (`header_names` lower-case);
    `content_encoding` is the Content-Encoding to keep (aws-chunked already removed)."""
    meta: dict[str, str] = {}
    for name in header_names:
        if name.startswith(META_HEADER_PREFIX) and len(name) > len(META_HEADER_PREFIX):
            meta[name[len(META_HEADER_PREFIX):]] = (header(name) or "").strip()
    for name in STORED_HEADERS:
        value = content_encoding if name == "content-encoding" else header(name)
        if value is not None:
            meta[RESERVED_PREFIX + name] = value.strip()
    return meta


def completed_metadata(etag: str, body_checksums: Mapping[str, str]) -> dict[str, str]:
    """What only the end of the body tells: the ETag and the checksums the data matched."""
    meta = {ETAG_KEY: etag}
    meta.update({CHECKSUM_PREFIX + algorithm: value for algorithm, value in body_checksums.items()})
    return meta


def content_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """The entries that describe the content itself (its ETag and checksums), which a copy keeps
    whatever metadata it replaces."""
    return {key: value for key, value in metadata.items() if key == ETAG_KEY or key.startswith(CHECKSUM_PREFIX)}


def etag_of(metadata: Mapping[str, str], sha256_hex: str) -> str:
    """The object's ETag, unquoted."""
    return metadata.get(ETAG_KEY) or sha256_hex


def response_headers(metadata: Mapping[str, str], content_type: str) -> list[tuple[str, str]]:
    """The headers a GET or HEAD answers with for the object's metadata. A user entry whose name is
    not a valid header name is left out and counted in `x-amz-missing-meta`, as S3 does; a value
    that is not printable ASCII is sent RFC 2047-encoded, as S3 sends it."""
    headers = [("Content-Type", content_type or DEFAULT_CONTENT_TYPE)]
    missing = 0
    for key, value in metadata.items():
        if key.startswith(RESERVED_PREFIX):
            header = key[len(RESERVED_PREFIX):]
            if header in STORED_HEADERS:
                headers.append((header, value))
            continue
        if not _TOKEN.fullmatch(key):
            missing += 1
            continue
        headers.append((META_HEADER_PREFIX + key.lower(), _header_value(value)))
    if missing:
        headers.append(("x-amz-missing-meta", str(missing)))
    return headers


def checksum_algorithms(metadata: Mapping[str, str]) -> tuple[str, ...]:
    """The algorithms of the checksums the object's upload carried."""
    return tuple(key[len(CHECKSUM_PREFIX):] for key in metadata if key.startswith(CHECKSUM_PREFIX))


def checksum_headers(metadata: Mapping[str, str], sha256_hex: str) -> list[tuple[str, str]]:
    """`x-amz-checksum-*` of the whole object, for `x-amz-checksum-mode: ENABLED`: those the upload
    carried, and always the SHA-256 the product computed over the stored content."""
    found = {key[len(CHECKSUM_PREFIX):]: value for key, value in metadata.items() if key.startswith(CHECKSUM_PREFIX)}
    if "sha256" not in found and len(sha256_hex) == 64:
        found["sha256"] = base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")
    headers = [(checksums.header_name(algorithm), value) for algorithm, value in sorted(found.items())
               if algorithm in checksums.ALGORITHMS]
    if headers:
        composite = any(_COMPOSITE.fullmatch(value) for _, value in headers)
        headers.append(("x-amz-checksum-type", "COMPOSITE" if composite else "FULL_OBJECT"))
    return headers


def multipart_metadata(etag: str, composite_sha256: str) -> dict[str, str]:
    """What a completed multipart upload adds to its version's metadata: its ETag (the hex MD5 of the
    parts' MD5s, `-N`) and, as its SHA-256 checksum, the composite of its parts' SHA-256s in S3's
    form for a COMPOSITE checksum (`base64-N`), from `composite_sha256` (`hex-N`)."""
    digest, _, parts = composite_sha256.partition("-")
    checksum = base64.b64encode(bytes.fromhex(digest)).decode("ascii") + f"-{parts}"
    return {ETAG_KEY: etag, CHECKSUM_PREFIX + "sha256": checksum}


def _header_value(value: str) -> str:
    if _PLAIN_VALUE.fullmatch(value):
        return value
    return "=?UTF-8?B?" + base64.b64encode(value.encode("utf-8", "replace")).decode("ascii") + "?="
