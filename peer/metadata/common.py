"""Request checks, name-ordered paging and the stored token layout shared by the metadata backends.

Both backends compare names by Unicode code point (SQLite BINARY collation on UTF-8, MongoDB's
simple binary comparison), so a prefix is the half-open range [prefix, prefix_upper_bound(prefix))
and `%`, `_` or regex characters in a name are never special.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses

from peer.errors import InvalidRequest
from peer.metadata.store import TokenRecord, VersionSpec

# A token is stored as exactly its record's fields (SQLite columns, MongoDB document keys), in this
# order: `TokenRecord(*row)` and `TokenRecord(**doc)` read it back, and no secret has a place to go.
TOKEN_FIELDS = tuple(field.name for field in dataclasses.fields(TokenRecord))

_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string above every string that starts with prefix; None when no such bound exists."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code > _MAX_CODE_POINT:
            continue
        if code in _SURROGATES:  # surrogates cannot be stored as UTF-8; the next scalar value can
            code = _SURROGATES.stop
        return "".join(chars) + chr(code)
    return None


def encode_token(last_name: str) -> str:
    """The token resuming a listing after last_name; clients must treat it as opaque."""
    return base64.urlsafe_b64encode(last_name.encode()).decode("ascii")


def decode_token(token: str) -> str:
    """The name a listing resumes after ("" starts from the beginning)."""
    if not token:
        return ""
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode()
    except (UnicodeError, ValueError, binascii.Error) as exc:
        raise InvalidRequest(f"malformed page token: {token[:40]!r}") from exc


def check_limit(limit: int) -> int:
    if limit < 1:
        raise InvalidRequest(f"page limit must be at least 1, got {limit}")
    return limit


def check_version_spec(spec: VersionSpec) -> VersionSpec:
    """A spec naming a number and an id at once is ambiguous: refuse it rather than guess which wins."""
    if spec.number is not None and spec.version_id is not None:
        raise InvalidRequest("name a version by number or by id, not both")
    return spec
