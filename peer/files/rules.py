"""The rules on what a caller may name and attach: file names, ids, content types, user metadata,
listing delimiters and page sizes. Every edge hands raw values to FileService, which applies these.

Names are opaque keys in the metadata store and never become file-system paths; still they must be
printable UTF-8 of bounded size so that listings and logs stay safe.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from peer.errors import InvalidRequest
from peer.files.limits import ClientLimits
from peer.ring.policy import InvalidPolicy, Policy

MAX_NAME_BYTES = 1024
MAX_CONTENT_TYPE = 256
MAX_META_ENTRIES = 64
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_DELIMITER_BYTES = 8
MAX_POLICY_CHARS = 32  # far beyond any valid spelling; a longer one is not echoed back whole
# fullmatch, not match with ^...$: "$" also matches before a trailing newline.
HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _utf8(text: str, what: str) -> bytes:
    """Protobuf only ever hands us valid text; another edge or a direct caller may not (a lone surrogate)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{what} is not valid UTF-8") from None


def check_name(name: str) -> str:
    if not name:
        raise InvalidRequest("a file name is required")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidRequest(f"file name longer than {MAX_NAME_BYTES} bytes")
    if _has_control(name):
        raise InvalidRequest("file name contains NUL or control characters")
    _utf8(name, "file name")
    return name


def check_id(value: str, what: str) -> str:
    if not HEX32.fullmatch(value):
        raise InvalidRequest(f"invalid {what} {value[:40]!r}: expected 32 lowercase hex characters")
    return value


def check_token_id(value: str) -> str:
    if not HEX16.fullmatch(value):
        raise InvalidRequest(f"invalid token id {value[:40]!r}: expected 16 lowercase hex characters")
    return value


def check_content_type(value: str) -> str:
    if len(value) > MAX_CONTENT_TYPE or _has_control(value):
        raise InvalidRequest(f"content type must be printable and at most {MAX_CONTENT_TYPE} characters")
    _utf8(value, "content type")
    return value


def check_metadata(meta: Mapping[str, str], max_bytes: int = ClientLimits.max_metadata_bytes) -> dict[str, str]:
    """`max_bytes` is DFS_MAX_METADATA_BYTES (its declared default unless the caller passes the setting)."""
    if len(meta) > MAX_META_ENTRIES:
        raise InvalidRequest(f"at most {MAX_META_ENTRIES} user metadata entries are allowed")
    total = sum(len(_utf8(k, "a user metadata key")) + len(_utf8(v, "a user metadata value")) for k, v in meta.items())
    if total > max_bytes:
        raise InvalidRequest(f"user metadata larger than {max_bytes} bytes (DFS_MAX_METADATA_BYTES)")
    for key in meta:
        if not key or _has_control(key):
            raise InvalidRequest("user metadata keys must be non-empty and printable")
    return dict(meta)


def check_version_number(number: int) -> int:
    if number < 1:
        raise InvalidRequest(f"version numbers start at 1, got {number}")
    return number


def check_delimiter(delimiter: str) -> str:
    """A listing delimiter is a short separator such as "/"; "" means none (a flat listing)."""
    if not delimiter:
        return ""
    if len(_utf8(delimiter, "the delimiter")) > MAX_DELIMITER_BYTES:
        raise InvalidRequest(f"the delimiter must be at most {MAX_DELIMITER_BYTES} bytes")
    if _has_control(delimiter):
        raise InvalidRequest("the delimiter contains NUL or control characters")
    return delimiter


def check_policy(policy: str) -> str:
    """A redundancy policy a caller named, in its one canonical spelling; "" (the default) stays "".
    InvalidPolicy (an InvalidRequest) names the policy and the kinds this peer stores."""
    if not policy:
        return ""
    if len(policy) > MAX_POLICY_CHARS:
        raise InvalidPolicy(policy[:MAX_POLICY_CHARS] + "...", f"longer than {MAX_POLICY_CHARS} characters")
    return str(Policy.parse(policy))


def check_page_size(size: int) -> int:
    """0 asks for the default page; more than the maximum gets the maximum."""
    if size < 0:
        raise InvalidRequest("page size must not be negative")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
