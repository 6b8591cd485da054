"""The two sides of `dfs cp` and `dfs sync`: which strings name remote files, and which files a filter keeps.

Kept apart from planning so that the one rule that guards the local disk (a remote name becomes a
local path only through `local_path_for`) lives in one short place, with nothing around it that moves data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from client.errors import InvalidArgument

REMOTE_SCHEME = "dfs:"
STDIO = "-"

ActionKind = Literal["upload", "download", "copy", "delete"]


@dataclass(frozen=True)
class Location:
    """One side of a copy: a remote name or prefix (`path` without the scheme), or a local path."""

    remote: bool
    path: str

    def __str__(self) -> str:
        return f"{REMOTE_SCHEME}{self.path}" if self.remote else self.path

    @property
    def is_stdio(self) -> bool:
        return not self.remote and self.path == STDIO

    @property
    def is_folder(self) -> bool:
        """A remote prefix (`dfs:PREFIX/`, or `dfs:` for every file); local folders are found on disk."""
        return self.remote and (self.path == "" or self.path.endswith("/"))

    def as_folder(self) -> Location:
        """Where a tree goes: `dfs:backup` and `dfs:backup/` both mean the names under backup/."""
        return self if not self.remote or self.is_folder else Location(True, self.path + "/")


def parse_location(text: str) -> Location:
    if text.startswith(REMOTE_SCHEME):
        return Location(True, text[len(REMOTE_SCHEME) :])
    if not text:
        raise InvalidArgument("an empty path names no file")
    return Location(False, text)


def transfer_kind(source: Location, dest: Location) -> ActionKind:
    """upload, download or copy; two local sides are refused, since that is plain `cp`'s job."""
    if source.remote and dest.remote:
        return "copy"
    if source.remote:
        return "download"
    if dest.remote:
        return "upload"
    raise InvalidArgument(
        f"both {source} and {dest} are local paths: one side must be remote (dfs:NAME or dfs:PREFIX/)"
    )


@dataclass(frozen=True)
class Filter:
    include: bool
    pattern: str


def is_included(rel: str, filters: Sequence[Filter]) -> bool:
    """As `aws s3`: every file is included to start with and each matching filter decides anew, so
    the last filter that matches wins (`--exclude '*' --include '*.txt'` keeps only .txt files).
    Patterns are fnmatch globs over the `/`-separated relative path; `*` also matches `/`."""
    included = True
    for f in filters:
        if fnmatchcase(rel, f.pattern):
            included = f.include
    return included


def local_path_for(root: str, rel: str) -> str:
    """The local path of the remote name `rel` under the directory `root`.

    Remote names are opaque keys, so one may say `../x`, `/etc/x` or `a//b`. Such a name is refused
    rather than rewritten: writing it anywhere but where it says would silently merge distinct files.
    """
    shown = printable(rel)
    parts = rel.split("/")
    if rel.startswith("/") or ".." in parts:
        raise InvalidArgument(f"refusing '{shown}': the name would escape the destination directory")
    if any(p in ("", ".") for p in parts):
        raise InvalidArgument(f"refusing '{shown}': the name has an empty or '.' path segment")
    return os.path.join(root, *parts)


def remote_name_for(folder: Location, rel: str) -> str:
    """The remote name of the local relative path `rel` under the remote `folder`."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"'{printable(rel)}' is not valid UTF-8, so it cannot be a name") from None
    return folder.as_folder().path + rel


def base_name(name: str) -> str:
    """The last segment of a remote name: what a single file is called inside a destination folder."""
    return name.rsplit("/", 1)[-1]


def printable(text: str) -> str:
    """A path shown on one terminal line whatever it holds: local file names may carry undecodable
    bytes or a line break, and each error must stay one line."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
