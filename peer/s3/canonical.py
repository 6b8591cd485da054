"""SigV4 building blocks as AWS defines them for S3: canonical forms, the signing key and signatures.

Pure functions of strings and bytes. The server rebuilds what the client signed from what arrived on
the wire, so every rule here must match the client's byte for byte:
- the path is split on '/', each segment percent-decoded then re-encoded (RFC 3986 unreserved
  characters kept, everything else %XX in upper case); S3, unlike other services, does not encode twice
  nor normalise `.`/`..` segments, and a `%2F` inside a segment stays `%2F`;
- query parameters are decoded ('+' is a space), re-encoded the same way, sorted by name then value,
  and an empty value still gets its `=`;
- header names are lower case, values are trimmed with runs of white space collapsed to one space,
  and a header sent several times is joined with ','.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Mapping, Sequence
from urllib.parse import quote, unquote_to_bytes

ALGORITHM = "AWS4-HMAC-SHA256"
CHUNK_ALGORITHM = "AWS4-HMAC-SHA256-PAYLOAD"
TRAILER_ALGORITHM = "AWS4-HMAC-SHA256-TRAILER"
SCOPE_TERMINATOR = "aws4_request"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def uri_encode(data: bytes | str) -> str:
    """AWS UriEncode: keep A-Z a-z 0-9 '-' '.' '_' '~', encode every other byte as %XX (upper case)."""
    return quote(data, safe="")


def canonical_uri(raw_path: str) -> str:
    """The canonical URI of a path as it arrived on the wire (still percent-encoded, no query)."""
    if not raw_path:
        return "/"
    return "/".join(uri_encode(unquote_to_bytes(segment)) for segment in raw_path.split("/"))


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """Decoded (name, value) pairs in arrival order; a parameter without '=' has the value ''."""
    pairs = []
    for piece in raw_query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((_decode_query_part(name), _decode_query_part(value)))
    return pairs


def _decode_query_part(part: str) -> str:
    return unquote_to_bytes(part.replace("+", " ")).decode("utf-8", errors="surrogateescape")


def _encode_query_part(part: str) -> str:
    return uri_encode(part.encode("utf-8", errors="surrogateescape"))


def canonical_query(pairs: Sequence[tuple[str, str]], *, exclude: Collection[str] = ()) -> str:
    """The canonical query string of decoded pairs, leaving out the names in `exclude`."""
    encoded = sorted(
        (_encode_query_part(name), _encode_query_part(value)) for name, value in pairs if name not in exclude
    )
    return "&".join(f"{name}={value}" for name, value in encoded)


def trim_value(value: str) -> str:
    """Trimall: strip the ends and collapse each run of white space into one space."""
    return " ".join(value.split())


def canonical_headers(headers: Mapping[str, Sequence[str]], signed: Sequence[str]) -> str:
    """One `name:value\\n` line per signed header, in the order of `signed`.

    `headers` maps lower-case names to every value received. A signed header that did not arrive gets
    an empty value, which can only fail the signature comparison: nothing is invented for it.
    """
    lines = []
    for name in signed:
        values = headers.get(name, ())
        lines.append(f"{name}:{','.join(trim_value(value) for value in values)}\n")
    return "".join(lines)


def canonical_request(
    method: str, uri: str, query: str, headers_block: str, signed_headers: str, payload_hash: str
) -> str:
    return "\n".join((method.upper(), uri, query, headers_block, signed_headers, payload_hash))


def credential_scope(date: str, region: str, service: str) -> str:
    return f"{date}/{region}/{service}/{SCOPE_TERMINATOR}"


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", errors="surrogateescape")).hexdigest()
    return "\n".join((ALGORITHM, amz_date, scope, digest))


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """HMAC chain over date, region, service and terminator, keyed first with `AWS4` + secret."""
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    for part in (region, service, SCOPE_TERMINATOR):
        key = _hmac(key, part)
    return key


def sign(key: bytes, to_sign: str) -> str:
    """The lower-case hex signature of a string to sign."""
    return hmac.new(key, to_sign.encode("utf-8", errors="surrogateescape"), hashlib.sha256).hexdigest()


def chunk_string_to_sign(amz_date: str, scope: str, previous_signature: str, chunk_sha256: str) -> str:
    """What an aws-chunked chunk signs: its data, chained to the signature before it (the seed for chunk 1).

    The empty-string hash stands where a regular request has its canonical request hash; it is fixed.
    """
    return "\n".join((CHUNK_ALGORITHM, amz_date, scope, previous_signature, EMPTY_SHA256, chunk_sha256))


def canonical_trailer(trailers: Sequence[tuple[str, str]]) -> bytes:
    """The bytes a trailer signature covers: `name:value\\n` per trailing header, sorted by name."""
    lines = sorted(f"{name.lower()}:{value.strip()}\n" for name, value in trailers)
    return "".join(lines).encode("utf-8", errors="surrogateescape")


def trailer_string_to_sign(amz_date: str, scope: str, previous_signature: str, trailer_sha256: str) -> str:
    """What the trailer signs: its canonical form, chained to the signature of the final empty chunk."""
    return "\n".join((TRAILER_ALGORITHM, amz_date, scope, previous_signature, trailer_sha256))


def signatures_equal(expected: str, claimed: str) -> bool:
    """Constant-time comparison, so response timing tells an attacker nothing about the right signature."""
    return hmac.compare_digest(expected.encode("ascii"), claimed.encode("ascii", errors="replace"))


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()
