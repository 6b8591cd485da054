"""Deciding what `dfs cp` and `dfs sync` will do, from listings alone, before any data moves.

Planning is separate from running so that a dry run and a real run decide exactly alike: both get the
same Plan, and only one of them hands it on to client.copy_run.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from client.copy_paths import (
    REMOTE_SCHEME,
    ActionKind,
    Filter,
    Location,
    base_name,
    is_included,
    local_path_for,
    printable,
    remote_name_for,
    transfer_kind,
)
from client.errors import InvalidArgument, NotFoundError
from client.models import VersionInfo


@dataclass(frozen=True)
class Entry:
    """A file found on one side: its path relative to the root, where it is, and what is known of it."""

    rel: str
    location: Location
    size: int
    sha256: str | None = None
    version: VersionInfo | None = None
    """The listed version of a remote file: transfers read exactly this version."""


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    dest: Location
    """The file written, or deleted."""
    source: Location | None = None
    size: int | None = 0
    """Bytes to move; None when unknown (stdin)."""
    version: VersionInfo | None = None
    """The remote version read (download, copy) or deleted."""

    def describe(self) -> str:
        if self.kind == "delete":
            return f"delete: {printable(str(self.dest))}"
        return f"{self.kind}: {printable(str(self.source))} to {printable(str(self.dest))}"


Status = Literal["done", "failed", "planned", "unchanged"]


@dataclass(frozen=True)
class Outcome:
    action: Action
    status: Status
    error: str = ""
    exit_code: int = 0
    moved: int = 0
    """Bytes actually moved."""

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "action": self.action.kind,
            "source": str(self.action.source) if self.action.source is not None else None,
            "dest": str(self.action.dest),
            "size": self.action.size,
            "status": self.status,
        }
        if self.error:
            doc["error"] = self.error
        return doc


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    """Transfers, then deletions, in name order."""
    unchanged: list[Outcome] = field(default_factory=list)
    refused: list[Outcome] = field(default_factory=list)
    """Files that cannot be copied at all (a name escaping the destination): failures known up front."""

    @property
    def transfer_bytes(self) -> int | None:
        """The bytes all transfers will move; None when one of them cannot know (stdin)."""
        sizes = [a.size for a in self.actions if a.kind != "delete"]
        return None if None in sizes else sum(s or 0 for s in sizes)

    def add_transfer(self, entry: Entry, dest_root: Location, *, into_folder: bool = True) -> None:
        """Plans `entry` to its place under the folder `dest_root`, or to `dest_root` itself."""
        kind = transfer_kind(entry.location, dest_root)
        try:
            if not into_folder:
                dest = dest_root
            elif dest_root.remote:
                dest = Location(True, remote_name_for(dest_root, entry.rel))
            else:
                dest = Location(False, local_path_for(dest_root.path, entry.rel))
            if entry.location == dest:
                raise InvalidArgument(f"{dest} is both the source and the destination")
        except InvalidArgument as exc:
            shown = (
                Location(dest_root.remote, f"{dest_root.path.rstrip('/')}/{entry.rel}") if into_folder else dest_root
            )
            action = Action(kind, shown, entry.location, entry.size, entry.version)
            self.refused.append(Outcome(action, "failed", str(exc), exc.exit_code))
            return
        self.actions.append(Action(kind, dest, entry.location, entry.size, entry.version))


def plan_tree(entries: Iterable[Entry], dest_root: Location, filters: Sequence[Filter]) -> Plan:
    """`cp --recursive`: each file the filters let through goes to the same relative place under dest_root."""
    plan = Plan()
    for entry in sorted(entries, key=lambda e: e.rel):
        if is_included(entry.rel, filters):
            plan.add_transfer(entry, dest_root)
    return plan


def same_content(a: Entry, b: Entry) -> bool:
    """Equal sizes and equal known SHA-256s; a size difference alone decides, without hashing."""
    return a.size == b.size and a.sha256 is not None and a.sha256 == b.sha256


def plan_sync(
    sources: Mapping[str, Entry],
    dests: Mapping[str, Entry],
    dest_root: Location,
    filters: Sequence[Filter],
    *,
    delete: bool,
) -> Plan:
    """`sync`: copy what is missing or different at the destination; with `delete`, remove what the
    source lacks. Filters apply to both sides, so an excluded destination file is never deleted."""
    plan = Plan()
    for rel in sorted(sources):
        if not is_included(rel, filters):
            continue
        src, dst = sources[rel], dests.get(rel)
        if dst is not None and same_content(src, dst):
            kind = transfer_kind(src.location, dst.location)
            plan.unchanged.append(Outcome(Action(kind, dst.location, src.location, src.size), "unchanged"))
        else:
            plan.add_transfer(src, dest_root)
    if delete:
        for rel in sorted(dests.keys() - sources.keys()):
            if is_included(rel, filters):
                dst = dests[rel]
                plan.actions.append(Action("delete", dst.location, version=dst.version))
    return plan


def walk_local(root: str) -> Iterator[Entry]:
    """Every regular file under the directory `root`, with its `/`-separated relative path.

    Symbolic links to files are followed, links to directories are not (no loops); FIFOs, sockets and
    devices are skipped, since reading one could block forever. An unreadable directory raises: a
    listing with a hole in it would make `sync --delete` remove files that still exist.
    """

    def fail(exc: OSError) -> None:
        raise exc

    for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
        dirnames.sort()
        for fname in sorted(filenames):
            path = os.path.join(dirpath, fname)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            try:
                info = os.stat(path)
            except OSError:  # a dangling link: the transfer reports why it cannot be read
                yield Entry(rel, Location(False, path), 0)
                continue
            if stat.S_ISREG(info.st_mode):
                yield Entry(rel, Location(False, path), info.st_size)


def sha256_file(path: str) -> str | None:
    """The file's SHA-256, read piece by piece; None when it cannot be read (the copy then says why)."""
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


class RemoteListing(Protocol):
    """The one SDK call planning needs: a listing brings each file's size and SHA-256 without its data."""

    def list(self, prefix: str = ...) -> Iterable[VersionInfo]: ...


class Planner:
    """Plans copies through one client; `jobs` local files are hashed at once."""

    def __init__(self, client: RemoteListing, jobs: int) -> None:
        self._client = client
        self._jobs = jobs

    def plan_cp(self, source: Location, dest: Location, *, recursive: bool, filters: Sequence[Filter]) -> Plan:
        transfer_kind(source, dest)
        if source.is_stdio or dest.is_stdio:
            return self._plan_stdio(source, dest, recursive)
        if source.remote:
            if recursive:
                return plan_tree(self.list_remote(source.as_folder()), dest.as_folder(), filters)
            if source.is_folder:
                raise InvalidArgument(f"{source} is a folder: add --recursive to copy the files under it")
            info = self.find_remote(source.path)
            entry = Entry(base_name(info.name), source, info.size, info.sha256, info)
        else:
            if os.path.isdir(source.path):
                if not recursive:
                    raise InvalidArgument(f"{source} is a directory: add --recursive to copy the files in it")
                return plan_tree(walk_local(source.path), dest.as_folder(), filters)
            size = os.stat(source.path).st_size  # a missing file fails here, before anything moves
            entry = Entry(os.path.basename(source.path.rstrip(os.sep)), source, size)
        plan = Plan()
        if is_included(entry.rel, filters):
            plan.add_transfer(entry, dest, into_folder=self._is_folder(dest))
        return plan

    def plan_sync(self, source: Location, dest: Location, *, filters: Sequence[Filter], delete: bool) -> Plan:
        transfer_kind(source, dest)
        if source.is_stdio or dest.is_stdio:
            raise InvalidArgument("sync copies folders, not stdin or stdout")
        if not source.remote and not os.path.isdir(source.path):
            os.stat(source.path)  # a missing path says so
            raise InvalidArgument(f"{source} is not a directory: sync copies folders (use cp for one file)")
        dest = dest.as_folder()
        sources = {e.rel: e for e in self._list_tree(source.as_folder())}
        dests = {e.rel: e for e in self._list_tree(dest)}
        self._hash_local_twins(sources, dests, filters)
        return plan_sync(sources, dests, dest, filters, delete=delete)

    def list_remote(self, folder: Location) -> Iterator[Entry]:
        prefix = folder.path
        for info in self._client.list(prefix):
            yield Entry(info.name[len(prefix) :], Location(True, info.name), info.size, info.sha256, info)

    def find_remote(self, name: str) -> VersionInfo:
        """The latest version of exactly `name`. Listings come in name order, and a name sorts before
        every longer name it is a prefix of, so the first entry listed under `name` decides."""
        for info in self._client.list(name):
            if info.name == name:
                return info
            break
        raise NotFoundError(f"{REMOTE_SCHEME}{name}: no such file")

    def _list_tree(self, root: Location) -> Iterable[Entry]:
        if root.remote:
            return self.list_remote(root)
        if not os.path.exists(root.path):
            return ()
        if not os.path.isdir(root.path):
            raise InvalidArgument(f"{root} is not a directory")
        return walk_local(root.path)

    def _hash_local_twins(self, sources: dict[str, Entry], dests: dict[str, Entry], filters: Sequence[Filter]) -> None:
        """Fills in the SHA-256 of local files whose counterpart has the same size (remote sizes and
        hashes come with the listing); a differing size needs no hash, so those files are not read."""
        twins = [
            rel
            for rel in sources.keys() & dests.keys()
            if sources[rel].size == dests[rel].size and is_included(rel, filters)
        ]
        for side in (sources, dests):
            local = sorted(rel for rel in twins if not side[rel].location.remote)
            if not local:
                continue
            with ThreadPoolExecutor(max_workers=self._jobs, thread_name_prefix="dfs-hash") as pool:
                digests = pool.map(sha256_file, [side[rel].location.path for rel in local])
                for rel, digest in zip(local, digests, strict=True):
                    side[rel] = replace(side[rel], sha256=digest)

    def _plan_stdio(self, source: Location, dest: Location, recursive: bool) -> Plan:
        if recursive:
            raise InvalidArgument("--recursive cannot read stdin or write stdout")
        if source.is_stdio:
            if dest.is_folder:
                raise InvalidArgument(f"stdin has no name: give the whole name, {dest}NAME")
            return Plan([Action("upload", dest, source, None)])
        if source.is_folder:
            raise InvalidArgument(f"{source} is a folder: only one file can be written to stdout")
        info = self.find_remote(source.path)
        return Plan([Action("download", dest, source, info.size, info)])

    @staticmethod
    def _is_folder(dest: Location) -> bool:
        if dest.remote:
            return dest.is_folder
        return dest.path.endswith(("/", os.sep)) or os.path.isdir(dest.path)
