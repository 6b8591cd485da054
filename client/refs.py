"""How a user's words name a file and a version on the wire.

A file is named by its name or by its file id (uuid4().hex: 32 lowercase hex digits). Since a name may
itself look like a file id, a ref of that shape is tried as an id first and then as a name.
"""

from __future__ import annotations

import re

from client.errors import InvalidArgument
from proto import dfs_pb2

FILE_ID_RE = re.compile(r"[0-9a-f]{32}")


def is_file_id(ref: str) -> bool:
    return FILE_ID_RE.fullmatch(ref) is not None


def file_ref_candidates(ref: str) -> list[dfs_pb2.FileRef]:
    """The FileRefs to try in order: the next one is only tried when the previous is NOT_FOUND."""
    if not ref:
        raise InvalidArgument("a file name or file id is required")
    if is_file_id(ref):
        return [dfs_pb2.FileRef(file_id=ref), dfs_pb2.FileRef(name=ref)]
    return [dfs_pb2.FileRef(name=ref)]


def version_selector(version: int | str | None) -> dfs_pb2.VersionSelector | None:
    """None (the latest), a number, a string of digits (a number) or another string (a version id)."""
    if version is None:
        return None
    if isinstance(version, bool):
        raise InvalidArgument(f"invalid version: {version!r}")
    if isinstance(version, int):
        return dfs_pb2.VersionSelector(number=_positive(version))
    text = version.strip()
    if not text:
        raise InvalidArgument("an empty version is neither a number nor a version id")
    if text.isascii() and text.isdigit():
        return dfs_pb2.VersionSelector(number=_positive(int(text)))
    if not is_file_id(text):  # version ids have the same shape as file ids
        raise InvalidArgument(f"invalid version {text[:40]!r}: expected a number or a 32-hex version id")
    return dfs_pb2.VersionSelector(version_id=text)


def _positive(number: int) -> int:
    if number < 1:
        raise InvalidArgument(f"version numbers start at 1, got {number}")
    return number
