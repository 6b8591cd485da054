"""What a GET or HEAD asks beyond the object: a byte range and the preconditions on its ETag and date.

Both follow HTTP (RFC 9110) as S3 applies it. A Range header S3 would ignore (another unit, several
ranges, bad syntax) sends the whole object; a range that starts past the end is `InvalidRange` (416).
Preconditions are judged in RFC order: If-Match, else If-Unmodified-Since (a failure is 412
`PreconditionFailed`); then If-None-Match, else If-Modified-Since (a failure is 304 Not Modified). A
date that cannot be read is ignored, as HTTP says; dates compare at whole seconds, the precision of
Last-Modified.
"""

from __future__ import annotations

import calendar
import email.utils
import enum
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from peer.s3.errors import S3Error

_RANGE = re.compile(r"bytes\s*=\s*(\d*)\s*-\s*(\d*)", re.IGNORECASE)


@dataclass(frozen=True)
class Span:
    """The bytes of a ranged answer: `length` bytes from `offset` of an object of `size` bytes."""

    offset: int
    length: int
    size: int

    @property
    def content_range(self) -> str:
        return f"bytes {self.offset}-{self.offset + self.length - 1}/{self.size}"


def parse_range(header: str | None, size: int) -> Span | None:
    """The span a Range header selects of an object of `size` bytes; None to answer with all of it."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:  # another unit, several ranges or bad syntax: S3 ignores the header
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        wanted = int(last)
        if wanted == 0 or size == 0:
            raise _unsatisfiable(header, size)
        wanted = min(wanted, size)
        return Span(size - wanted, wanted, size)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise _unsatisfiable(header, size)
    end = min(end, size - 1)
    return Span(start, end - start + 1, size)


def _unsatisfiable(header: str, size: int) -> S3Error:
    return S3Error("InvalidRange", "The requested range is not satisfiable",
                   extra={"RangeRequested": header.strip(), "ActualObjectSize": str(size)})


class Outcome(enum.Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = "not modified"


HeaderGetter = Callable[[str], str | None]


def check_preconditions(header: HeaderGetter, etag: str, last_modified: float) -> Outcome:
    """Whether a GET or HEAD of an object with `etag` (unquoted) and `last_modified` (epoch seconds)
    goes on, or is answered 304; raises `PreconditionFailed` (412)."""
    modified = int(last_modified)
    if_match = header("if-match")
    if if_match is not None:
        if not _etag_listed(if_match, etag):
            raise _failed("If-Match")
    else:
        since = _http_date(header("if-unmodified-since"))
        if since is not None and modified > since:
            raise _failed("If-Unmodified-Since")
    if_none_match = header("if-none-match")
    if if_none_match is not None:
        return Outcome.NOT_MODIFIED if _etag_listed(if_none_match, etag) else Outcome.PROCEED
    since = _http_date(header("if-modified-since"))
    if since is not None and modified <= since:
        return Outcome.NOT_MODIFIED
    return Outcome.PROCEED


def check_copy_preconditions(header: HeaderGetter, etag: str, last_modified: float) -> None:
    """The `x-amz-copy-source-if-*` conditions of a copy, judged on its source as a GET's are (the
    same order, If-Match over If-Unmodified-Since, If-None-Match over If-Modified-Since); a copy has
    no 304, so every failure is `PreconditionFailed` (412)."""

    def source_header(name: str) -> str | None:
        return header("x-amz-copy-source-" + name)

    if check_preconditions(source_header, etag, last_modified) is Outcome.NOT_MODIFIED:
        raise _failed("x-amz-copy-source-If-None-Match" if source_header("if-none-match") is not None
                      else "x-amz-copy-source-If-Modified-Since")


def etag_matches(value: str, etag: str) -> bool:
    """Whether an If-Match / If-None-Match value names `etag` (unquoted); "*" names any object."""
    return _etag_listed(value, etag)


def precondition_failed(condition: str) -> S3Error:
    """The 412 of a failed condition, named as S3 names it."""
    return _failed(condition)


def _failed(condition: str) -> S3Error:
    return S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                   extra={"Condition": condition})


def _etag_listed(value: str, etag: str) -> bool:
    """Whether an If-Match / If-None-Match list names `etag` ("*" names any object that exists)."""
    for item in value.split(","):
        tag = item.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag.strip('"') == etag:
            return True
    return False


def _http_date(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # HTTP dates are GMT
        return calendar.timegm(parsed.timetuple())
    return int(parsed.timestamp())


def http_date(epoch_s: float) -> str:
    """An HTTP date (Last-Modified): `Wed, 01 Mar 2026 12:00:00 GMT`."""
    return email.utils.formatdate(int(epoch_s), usegmt=True)


def iso_time(epoch_s: float) -> str:
    """The time format of S3's XML documents: `2026-03-01T12:00:00.000Z`."""
    whole = int(epoch_s)
    millis = int(round((epoch_s - whole) * 1000))
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"
