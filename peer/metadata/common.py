"""Request checks, name-ordered paging and the stored token and S3 key layouts shared by the backends.

Both backends compare names by Unicode code point (SQLite BINARY collation on UTF-8, MongoDB's
simple binary comparison), so a prefix is the half-open range [prefix, prefix_upper_bound(prefix))
and `%`, `_` or regex characters in a name are never special. A delimited listing (`page_keys`) is
written once here over a backend's ordered name scan, so both backends page it the same way.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from peer.errors import InvalidRequest
from peer.metadata.store import ChunkRef, Placed, S3KeyRecord, TokenRecord, VersionPage, VersionRecord, VersionSpec

# A token is stored as exactly its record's fields (SQLite columns, MongoDB document keys), in this
# order: `TokenRecord(*row)` and `TokenRecord(**doc)` read it back, and no secret has a place to go.
TOKEN_FIELDS = tuple(field.name for field in dataclasses.fields(TokenRecord))
# The same for S3 access keys: the secret has a place only in its sealed form.
S3_KEY_FIELDS = tuple(field.name for field in dataclasses.fields(S3KeyRecord))

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


def common_prefix(name: str, prefix: str, delimiter: str) -> str | None:
    """The common prefix `name` (which starts with `prefix`) rolls up into: the prefix plus the text up
    to and including the first delimiter after it; None when the name is listed as itself."""
    if not delimiter:
        return None
    cut = name.find(delimiter, len(prefix))
    return None if cut < 0 else name[: cut + len(delimiter)]


NameScan = Callable[[str, bool, int], Sequence[str]]
"""scan(bound, inclusive, count): up to `count` names under the listing's prefix, in name order, from
`bound` on (`bound` itself only when `inclusive`): one bounded, indexed range read of the backend."""


@dataclass(frozen=True)
class KeyPage:
    """The keys of one page of a delimited listing, before the backend loads the files' records."""

    names: list[str]  # listed as themselves, in name order
    prefixes: list[str]  # common prefixes, in name order
    next_token: str  # "" on the last page


_SEEK_SCAN = 16  # names read just past a common prefix, where the next one may begin at once


def page_keys(prefix: str, delimiter: str, limit: int, page_token: str, scan: NameScan) -> KeyPage:
    """One page of at most `limit` keys, files and common prefixes together.

    The page token carries the last key returned. When that key is a common prefix the next page
    starts at the prefix's upper bound, so a prefix is never repeated and the names under it are
    skipped by one seek rather than read; within a page, a scan that ends inside the latest common
    prefix continues past it the same way. A scan after such a seek reads few names (the next one
    may be another large prefix), and the reads double while they bring keys, up to limit + 1:
    a page reads O(limit) names however many are rolled up, in O(prefixes + log limit) scans.
    """
    check_limit(limit)
    bound = _resume_bound(prefix, delimiter, decode_token(page_token))
    names: list[str] = []
    prefixes: list[str] = []
    last = ""
    rolled: str | None = None  # the latest common prefix; the names under it are already covered
    count = limit + 1
    while bound is not None:
        batch = scan(bound[0], bound[1], count)
        for name in batch:
            if rolled is not None and name.startswith(rolled):
                continue
            if len(names) + len(prefixes) == limit:  # a key beyond the full page: the listing goes on
                return KeyPage(names, prefixes, encode_token(last))
            group = common_prefix(name, prefix, delimiter)
            if group is None:
                names.append(name)
                last = name
            else:
                prefixes.append(group)
                rolled = last = group
        if len(batch) < count:  # the scan reached the end of the prefix's range
            break
        tail = batch[-1]
        if rolled is not None and tail.startswith(rolled):
            bound, count = _past(rolled), min(_SEEK_SCAN, limit + 1)
        else:
            bound, count = (tail, False), min(2 * count, limit + 1)
    return KeyPage(names, prefixes, "")


VersionScan = Callable[[str, int | None, int], Sequence[VersionRecord]]
"""versions(name, below, count): up to `count` versions of the file `name`, newest first, only those
numbered below `below` when it is not None; each record's `latest` set as get_version sets it."""

VersionNumber = Callable[[str, str], int | None]
"""number_of(name, version_id): the number of that version of the file `name`; None when it has none."""


def page_versions(prefix: str, delimiter: str, limit: int, after_name: str, after_version: str,
                  scan: NameScan, versions: VersionScan, number_of: VersionNumber) -> VersionPage:
    """One page of at most `limit` entries, versions and common prefixes together, of every version of
    the files under `prefix`: by name, each file's versions newest first (S3's ListObjectVersions).

    The page ends on a (name, version id) pair, or on a common prefix (its version id ""). It resumes
    after that version of that name (with the name's older versions, then the following names), or
    after the name, or after the whole common prefix a name falls in, as `page_keys` does; so no page
    size drops or repeats a version. Each file's versions are read at most as many as the page still
    needs, plus one to tell whether it goes on.
    """
    check_limit(limit)
    listed: list[VersionRecord] = []
    prefixes: list[str] = []
    last = ("", "")

    def room() -> int:
        return limit - len(listed) - len(prefixes)

    def take(records: Sequence[VersionRecord]) -> bool:
        """Adds the records while the page has room; False when one of them found it full."""
        nonlocal last
        for record in records:
            if room() == 0:
                return False
            listed.append(record)
            last = (record.name, record.version_id)
        return True

    def ended() -> VersionPage:
        return VersionPage(tuple(listed), tuple(prefixes), last[0], last[1])

    bound: tuple[str, bool] | None
    if after_version:
        if not after_name:
            raise InvalidRequest("a version marker needs the name it belongs to")
        number = number_of(after_name, after_version)
        if number is None:
            raise InvalidRequest(f"version {after_version[:40]!r} of {after_name[:200]!r} not found to resume after")
        if not take(versions(after_name, number, limit + 1)):
            return ended()
        bound = (after_name, False)
    elif after_name:
        bound = _resume_bound(prefix, delimiter, after_name)
    else:
        bound = (prefix, True)
    rolled: str | None = None
    count = limit + 1
    while bound is not None:
        batch = scan(bound[0], bound[1], count)
        for name in batch:
            if rolled is not None and name.startswith(rolled):
                continue
            group = common_prefix(name, prefix, delimiter)
            if group is None:
                if not take(versions(name, None, room() + 1)):
                    return ended()
                continue
            if room() == 0:
                return ended()
            prefixes.append(group)
            rolled = group
            last = (group, "")
        if len(batch) < count:
            break
        tail = batch[-1]
        bound = _past(rolled) if rolled is not None and tail.startswith(rolled) else (tail, False)
    return VersionPage(tuple(listed), tuple(prefixes), "", "")


def _resume_bound(prefix: str, delimiter: str, after: str) -> tuple[str, bool] | None:
    """Where a listing resumes after the key its token carries; None when nothing can follow it."""
    if not after:
        return prefix, True
    group = common_prefix(after, prefix, delimiter) if after.startswith(prefix) else None
    return (after, False) if group is None else _past(group)


def _past(group: str) -> tuple[str, bool] | None:
    """The scan bound just past every name that starts with `group`."""
    upper = prefix_upper_bound(group)
    return None if upper is None else (upper, True)


def check_limit(limit: int) -> int:
    if limit < 1:
        raise InvalidRequest(f"page limit must be at least 1, got {limit}")
    return limit


def check_version_spec(spec: VersionSpec) -> VersionSpec:
    """A spec naming a number and an id at once is ambiguous: refuse it rather than guess which wins."""
    if spec.number is not None and spec.version_id is not None:
        raise InvalidRequest("name a version by number or by id, not both")
    return spec


# A chunk list is stored the same way by both backends: SQLite as JSON text, MongoDB as the same
# lists inside the document. A replicated chunk is [id, size, peers]; an erasure-coded one adds its
# fragment ids as a fourth element, so records written before erasure coding read unchanged.
ChunkRow = list[Any]


def chunk_rows(chunks: Sequence[ChunkRef]) -> list[ChunkRow]:
    return [[c.chunk_id, c.size, list(c.peers), list(c.fragments)] if c.fragments
            else [c.chunk_id, c.size, list(c.peers)] for c in chunks]


def chunks_of_rows(rows: Sequence[Sequence[Any]]) -> tuple[ChunkRef, ...]:
    return tuple(ChunkRef(row[0], row[1], tuple(row[2]), tuple(row[3]) if len(row) > 3 else ()) for row in rows)


def chunk_docs(chunks: Sequence[ChunkRef]) -> list[dict[str, object]]:
    """MongoDB's form: one sub-document per chunk, `fragments` only on erasure-coded ones."""
    docs: list[dict[str, object]] = []
    for c in chunks:
        doc: dict[str, object] = {"id": c.chunk_id, "size": c.size, "peers": list(c.peers)}
        if c.fragments:
            doc["fragments"] = list(c.fragments)
        docs.append(doc)
    return docs


def chunks_of_docs(docs: Sequence[dict[str, Any]]) -> tuple[ChunkRef, ...]:
    return tuple(ChunkRef(d["id"], d["size"], tuple(d["peers"]), tuple(d.get("fragments", ()))) for d in docs)


def stored_ids(chunks: Sequence[ChunkRef]) -> list[str]:
    """Every id peers store for these chunks, each once: what keeps them from garbage collection."""
    return list(dict.fromkeys(i for c in chunks for i in (c.chunk_id, *c.fragments)))


def skipped_policy(default_policy: str) -> str:
    """The policy besides "" whose versions `placements` may pass over: the cluster's default when
    it copies chunks, since such a chunk is placed by that default anyway. An erasure-coded default
    skips nothing: its fragments are stored under ids of their own, each with one owner found only
    through its chunk and index, and placed as chunks of the default they would be copied K + M times."""
    return "" if default_policy.startswith("ec:") else default_policy


def placements_in(policy: str, chunks: Sequence[ChunkRef], wanted: set[str], found: dict[str, set[Placed]]) -> None:
    """Adds to `found` how one version under `policy` places the ids of `wanted` it stores: each
    fragment by its chunk and index (every such placement), each replicated chunk by the widest
    replication policy seen so far."""
    erasure = policy.startswith("ec:")
    for chunk in chunks:
        if erasure:
            for index, fragment in enumerate(chunk.fragments):
                if fragment in wanted:
                    found.setdefault(fragment, set()).add(Placed(policy, chunk.chunk_id, index))
        elif chunk.chunk_id in wanted:
            ways = found.setdefault(chunk.chunk_id, set())
            copies = [w for w in ways if not w.parent]
            if not copies:
                ways.add(Placed(policy))
            elif _copies(policy) > _copies(copies[0].policy):
                ways.discard(copies[0])
                ways.add(Placed(policy))


def sorted_placements(found: dict[str, set[Placed]]) -> dict[str, tuple[Placed, ...]]:
    return {stored: tuple(sorted(ways)) for stored, ways in found.items()}


def _copies(policy: str) -> int:
    """R of a stored `rep:R` (the metadata layer compares spellings; it does not parse policies)."""
    _, _, copies = policy.partition(":")
    return int(copies) if copies.isdecimal() else 0
