"""The planner and engine behind `dfs cp` and `dfs sync`, without a cluster: which file goes where,
which filter wins, which remote names may never become local paths, what sync decides is unchanged,
and that one failing file neither stops the others nor leaves a partial file behind."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from client import copy_plan
from client.atomic import write_atomically
from client.cli_copy import ordered_filters
from client.copying import (
    Action,
    Copier,
    Entry,
    Filter,
    Location,
    Outcome,
    Report,
    is_included,
    local_path_for,
    parse_location,
    plan_sync,
    plan_tree,
    remote_name_for,
    transfer_kind,
)
from client.errors import IntegrityError, InvalidArgument
from client.models import UploadResult, VersionInfo
from client.streams import Progress

# --------------------------------------------------------------------------------------- locations


def test_locations_remote_folder_local_and_stdio() -> None:
    assert parse_location("dfs:docs/a.txt") == Location(True, "docs/a.txt")
    assert not parse_location("dfs:docs/a.txt").is_folder
    assert parse_location("dfs:docs/").is_folder
    assert parse_location("dfs:").is_folder  # every file of the cluster
    assert parse_location("dfs:docs").as_folder() == Location(True, "docs/")
    assert parse_location("dfs:").as_folder() == Location(True, "")
    assert parse_location("./docs") == Location(False, "./docs")
    assert parse_location("-").is_stdio
    assert str(parse_location("dfs:x/y")) == "dfs:x/y"
    with pytest.raises(InvalidArgument):
        parse_location("")


def test_transfer_kinds_and_local_to_local_refused() -> None:
    local, remote = Location(False, "a"), Location(True, "b")
    assert transfer_kind(local, remote) == "upload"
    assert transfer_kind(remote, local) == "download"
    assert transfer_kind(remote, remote) == "copy"
    with pytest.raises(InvalidArgument) as info:
        transfer_kind(local, Location(False, "c"))
    assert info.value.exit_code == 2


# ------------------------------------------------------------------------------------------ filters


def test_no_filter_includes_everything() -> None:
    assert is_included("any/path.bin", [])


def test_the_last_matching_filter_wins() -> None:
    only_txt = [Filter(False, "*"), Filter(True, "*.txt")]
    assert is_included("a.txt", only_txt)
    assert is_included("deep/down/b.txt", only_txt), "* spans directories, as in aws s3"
    assert not is_included("c.log", only_txt)
    reversed_order = [Filter(True, "*.txt"), Filter(False, "*")]
    assert not is_included("a.txt", reversed_order)
    three = [*only_txt, Filter(False, "tmp/*")]
    assert not is_included("tmp/x.txt", three) and is_included("keep/x.txt", three)
    assert not is_included("A.TXT", only_txt), "globs are case-sensitive on every platform"


def test_filter_order_is_read_from_the_command_line() -> None:
    args = ["-r", "--exclude", "*", "--include=*.txt", "src", "dfs:dst/", "--exclude", "tmp/*"]
    assert ordered_filters(args) == [Filter(False, "*"), Filter(True, "*.txt"), Filter(False, "tmp/*")]
    assert ordered_filters(["--include", "a", "--", "--exclude", "b"]) == [Filter(True, "a")]


# ------------------------------------------------------------------------------------- name mapping


def test_remote_names_become_paths_under_the_destination() -> None:
    assert local_path_for("out", "a.txt") == os.path.join("out", "a.txt")
    assert local_path_for("out", "sub/deep/c.txt") == os.path.join("out", "sub", "deep", "c.txt")
    assert local_path_for("out", "..x/y..") == os.path.join("out", "..x", "y..")  # dots inside a name are fine


@pytest.mark.parametrize("rel", ["..", "../evil", "a/../../evil", "a/..", "/etc/passwd"])
def test_names_escaping_the_destination_are_refused(rel: str) -> None:
    with pytest.raises(InvalidArgument, match="escape the destination") as info:
        local_path_for("out", rel)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("rel", ["", "a//b", "./a", "a/.", "a/"])
def test_names_with_empty_or_dot_segments_are_refused(rel: str) -> None:
    with pytest.raises(InvalidArgument, match="empty or '.' path segment"):
        local_path_for("out", rel)


def test_local_paths_become_names_under_the_prefix() -> None:
    assert remote_name_for(Location(True, "backup"), "sub/a.txt") == "backup/sub/a.txt"
    assert remote_name_for(Location(True, "backup/"), "a.txt") == "backup/a.txt"
    assert remote_name_for(Location(True, ""), "a.txt") == "a.txt"
    with pytest.raises(InvalidArgument, match="not valid UTF-8"):
        remote_name_for(Location(True, "p/"), "bad\udcffname")


# -------------------------------------------------------------------------------------------- plans


def remote_entry(name: str, prefix: str, data: bytes = b"x", version: int = 1) -> Entry:
    info = version_info(name, data, version)
    return Entry(name[len(prefix) :], Location(True, name), len(data), info.sha256, info)


def version_info(name: str, data: bytes, version: int = 1, content_type: str = "") -> VersionInfo:
    return VersionInfo(
        file_id=hashlib.md5(name.encode()).hexdigest(),
        version_id=hashlib.md5(f"{name}@{version}".encode()).hexdigest(),
        version=version,
        name=name,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=content_type,
    )


def test_tree_download_maps_names_and_refuses_only_the_escaping_one() -> None:
    entries = [remote_entry(n, "p/") for n in ("p/b/c.txt", "p/a.txt", "p/../evil", "p/skip.log")]
    plan = plan_tree(entries, Location(False, "out"), [Filter(False, "*.log")])
    assert [(str(a.source), a.dest.path) for a in plan.actions] == [
        ("dfs:p/a.txt", os.path.join("out", "a.txt")),
        ("dfs:p/b/c.txt", os.path.join("out", "b", "c.txt")),
    ]
    assert all(a.kind == "download" and a.version is not None for a in plan.actions)
    [refused] = plan.refused
    assert refused.status == "failed" and refused.exit_code == 2
    assert "escape the destination" in refused.error and str(refused.action.source) == "dfs:p/../evil"


def test_tree_upload_keeps_relative_paths_under_the_prefix() -> None:
    entries = [Entry("sub/b.bin", Location(False, "src/sub/b.bin"), 3), Entry("a", Location(False, "src/a"), 1)]
    plan = plan_tree(entries, Location(True, "backup/"), [])
    assert [(a.kind, a.source, a.dest) for a in plan.actions] == [
        ("upload", Location(False, "src/a"), Location(True, "backup/a")),
        ("upload", Location(False, "src/sub/b.bin"), Location(True, "backup/sub/b.bin")),
    ]
    assert plan.transfer_bytes == 4


def test_a_remote_copy_onto_itself_is_refused() -> None:
    plan = plan_tree([remote_entry("p/a", "p/")], Location(True, "p/"), [])
    assert not plan.actions and "both the source and the destination" in plan.refused[0].error


def local_entry(rel: str, data: bytes, root: str = "src") -> Entry:
    return Entry(rel, Location(False, f"{root}/{rel}"), len(data), hashlib.sha256(data).hexdigest())


def test_sync_copies_only_what_is_missing_or_different() -> None:
    sources = {
        "same": local_entry("same", b"1234"),
        "edited": local_entry("edited", b"abcd"),  # same size, other bytes
        "grown": Entry("grown", Location(False, "src/grown"), 10),  # not hashed: the size decides
        "new": local_entry("new", b"n"),
    }
    dests = {
        "same": remote_entry("p/same", "p/", b"1234"),
        "edited": remote_entry("p/edited", "p/", b"wxyz"),
        "grown": remote_entry("p/grown", "p/", b"short"),
        "gone": remote_entry("p/gone", "p/"),
    }
    plan = plan_sync(sources, dests, Location(True, "p/"), [], delete=False)
    assert [a.dest.path for a in plan.actions] == ["p/edited", "p/grown", "p/new"]
    assert [o.action.dest.path for o in plan.unchanged] == ["p/same"]

    with_delete = plan_sync(sources, dests, Location(True, "p/"), [], delete=True)
    assert [(a.kind, a.dest.path) for a in with_delete.actions][-1] == ("delete", "p/gone")
    assert with_delete.actions[-1].version == dests["gone"].version


def test_sync_never_deletes_an_excluded_file_and_an_unknown_hash_means_copy() -> None:
    sources = {"a": Entry("a", Location(False, "src/a"), 1)}  # sha256 None: the file could not be read
    dests = {"a": remote_entry("p/a", "p/"), "keep.log": remote_entry("p/keep.log", "p/")}
    plan = plan_sync(sources, dests, Location(True, "p/"), [Filter(False, "*.log")], delete=True)
    assert [(a.kind, a.dest.path) for a in plan.actions] == [("upload", "p/a")]


# ------------------------------------------------------------------------------------------- engine


class FakeStream:
    def __init__(self, data: bytes, piece: int, corrupt: bool, progress: Progress | None) -> None:
        self._data, self._piece, self._corrupt, self._progress = data, piece, corrupt, progress
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self._data), self._piece):
            if self._corrupt and start + self._piece >= len(self._data):
                raise IntegrityError("chunk 1 of the file has the wrong sha256")  # found before it is passed on
            piece = self._data[start : start + self._piece]
            if self._progress is not None:
                self._progress(len(piece))
            yield piece

    def close(self) -> None:
        self.closed = True


class FakeStore:
    """An in-memory stand-in for DfsClient with the calls copying makes."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[VersionInfo, bytes]] = {}
        self.refused_names: set[str] = set()
        self.corrupt: set[str] = set()
        self.upload_sources: list[Any] = []

    def put(self, name: str, data: bytes, content_type: str = "") -> VersionInfo:
        old = self.files.get(name)
        info = version_info(name, data, old[0].version + 1 if old else 1, content_type)
        self.files[name] = (info, data)
        return info

    def list(self, prefix: str = "") -> Iterable[VersionInfo]:
        return [info for name, (info, _) in sorted(self.files.items()) if name.startswith(prefix)]

    def upload(
        self,
        source: Any,
        name: str | None = None,
        content_type: str = "",
        metadata: Mapping[str, str] | None = None,
        progress: Any = None,
        *,
        policy: str | None = None,
    ) -> UploadResult:
        assert name is not None
        self.upload_sources.append(source)
        if name in self.refused_names:
            raise InvalidArgument("file name contains NUL or control characters")
        data = Path(source).read_bytes() if isinstance(source, str) else b"".join(source)
        if progress is not None:
            progress(len(data))
        return UploadResult(self.put(name, data, content_type))

    def download(
        self, ref: str, dest: Any = None, *, version: int | str | None = None, progress: Progress | None = None
    ) -> Any:
        info, data = next(v for v in self.files.values() if v[0].file_id == ref)
        assert version == info.version_id, "the listed version is the one read"
        stream = FakeStream(data, 4, info.name in self.corrupt, progress)
        if dest is None:
            return stream
        if isinstance(dest, str):
            write_atomically(stream, Path(dest))  # the SDK's own path form
        else:
            for piece in stream:
                dest.write(piece)
        return info

    def delete(self, ref: str) -> object:
        return [self.files.pop(n)[0] for n, (info, _) in list(self.files.items()) if info.file_id == ref]


def run(copier: Copier, actions: list[Action]) -> list[Outcome]:
    moved: list[int] = []
    outcomes = copier.run(actions, moved.append, lambda o: None)
    assert sum(moved) == sum(o.moved for o in outcomes)
    return outcomes


def test_one_failing_upload_does_not_stop_the_others(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(name.encode() * 3)
    store = FakeStore()
    store.refused_names.add("p/b")
    copier = Copier(store, jobs=2)
    plan = copier.plan_cp(Location(False, str(tmp_path)), Location(True, "p/"), recursive=True, filters=[])
    outcomes = run(copier, plan.actions)
    assert [o.status for o in outcomes] == ["done", "failed", "done"]
    assert sorted(store.files) == ["p/a", "p/c"]
    report = Report(outcomes)
    assert report.exit_code == 2
    assert report.summary() == "copied 2 files (6 B), 0 unchanged, 1 failed"


def test_a_download_that_fails_verification_leaves_no_file_and_the_others_go_on(tmp_path: Path) -> None:
    store = FakeStore()
    store.put("p/good", b"good bytes")
    store.put("p/bad", b"bad bytes here")
    store.corrupt.add("p/bad")
    copier = Copier(store)
    out = tmp_path / "out"
    plan = copier.plan_cp(Location(True, "p/"), Location(False, str(out)), recursive=True, filters=[])
    outcomes = run(copier, plan.actions)
    assert [(o.action.source, o.status, o.exit_code) for o in outcomes] == [
        (Location(True, "p/bad"), "failed", 5),
        (Location(True, "p/good"), "done", 0),
    ]
    assert sorted(p.name for p in out.iterdir()) == ["good"], "no temporary or partial file is left"
    assert (out / "good").read_bytes() == b"good bytes"


def test_sync_hashes_a_local_file_only_when_the_sizes_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = copy_plan.sha256_file

    def counting(path: str) -> str | None:
        hashed.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(copy_plan, "sha256_file", counting)
    store = FakeStore()
    store.put("p/same", b"1234")
    store.put("p/resized", b"123")
    (tmp_path / "same").write_bytes(b"1234")
    (tmp_path / "resized").write_bytes(b"12345")
    plan = Copier(store).plan_sync(Location(False, str(tmp_path)), Location(True, "p"), filters=[], delete=False)
    assert hashed == ["same"]
    assert [a.dest.path for a in plan.actions] == ["p/resized"]
    assert [o.action.dest.path for o in plan.unchanged] == ["p/same"]


def test_remote_copy_streams_the_pieces_and_keeps_the_content_type() -> None:
    store = FakeStore()
    store.put("src/a.bin", b"0123456789" * 3, content_type="application/x-test")
    copier = Copier(store)
    plan = copier.plan_cp(Location(True, "src/a.bin"), Location(True, "dst/"), recursive=False, filters=[])
    assert [(a.kind, a.dest.path) for a in plan.actions] == [("copy", "dst/a.bin")]
    [outcome] = run(copier, plan.actions)
    assert outcome.status == "done" and outcome.moved == 30
    assert not isinstance(store.upload_sources[-1], bytes | str), "the upload is fed piece by piece"
    info, data = store.files["dst/a.bin"]
    assert data == b"0123456789" * 3 and info.content_type == "application/x-test"


def test_sync_delete_removes_local_files_the_source_lacks(tmp_path: Path) -> None:
    store = FakeStore()
    store.put("p/keep", b"k")
    (tmp_path / "stale").write_bytes(b"s")
    copier = Copier(store)
    plan = copier.plan_sync(Location(True, "p/"), Location(False, str(tmp_path)), filters=[], delete=True)
    outcomes = run(copier, plan.actions)
    assert [(o.action.kind, o.status) for o in outcomes] == [("download", "done"), ("delete", "done")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def test_exit_code_is_the_failures_own_code_only_when_they_agree() -> None:
    action = Action("upload", Location(True, "x"), Location(False, "x"))
    not_found = Outcome(action, "failed", "gone", 4)
    assert Report([not_found, not_found]).exit_code == 4
    assert Report([not_found, Outcome(action, "failed", "bad", 2)]).exit_code == 1
    assert Report([Outcome(action, "done", moved=5)]).exit_code == 0
