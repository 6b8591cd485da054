"""`dfs cp` and `dfs sync` as a shell user runs them: the real console script against real peers.

One 2-peer cluster serves the module and every test works under a prefix of its own. What is checked
is what users of `aws s3 cp/sync` rely on: trees become `/`-separated names and come back as the same
files, filters apply in the order given, a dry run moves nothing, sync leaves unchanged files alone
(their version numbers do not grow), --delete removes exactly what the source lacks, one failing file
does not stop the others, and a remote name never writes outside the destination directory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import PeerProc, shared_cluster
from tests.test_cli_integration import DFS, dfs, fails, json_out, ok, one_line, run_with_tty_stderr

CHUNK_SIZE = 1024 * 1024  # the peers' default --chunk-size


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[PeerProc]:
    """A peer of one converged 2-peer cluster (replicas 2) shared by the module."""
    with shared_cluster(tmp_path_factory, request, "copy-cluster", peers=2, replicas=2) as cluster:
        yield cluster.peers[0]


# ----------------------------------------------------------------------------------------- helpers


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def local_files(root: Path) -> dict[str, bytes]:
    """Every file under `root` by its `/`-separated relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def remote_files(peer: PeerProc, prefix: str) -> dict[str, dict[str, Any]]:
    """The latest version of every name under `prefix`, from `dfs --json list`."""
    listed = json_out(dfs(peer, "--json", "list", "--prefix", prefix))["files"]
    return {f["name"]: f for f in listed}


def remote_hashes(peer: PeerProc, prefix: str) -> dict[str, str]:
    """name relative to `prefix` -> SHA-256 of its latest version."""
    return {name[len(prefix) :]: f["sha256"] for name, f in remote_files(peer, prefix).items()}


def versions(peer: PeerProc, prefix: str) -> dict[str, int]:
    return {name[len(prefix) :]: f["version"] for name, f in remote_files(peer, prefix).items()}


def hashes(files: dict[str, bytes]) -> dict[str, str]:
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}


def lines(result: Any) -> list[str]:
    return [str(line) for line in ok(result).decode().splitlines()]


TREE = {
    "a.txt": b"alpha\n",
    "empty": b"",
    "sub/b.bin": os.urandom(CHUNK_SIZE + 5),  # two chunks: streamed, not sent in one message
    "sub/deep/c.txt": b"deep\n",
}


# ------------------------------------------------------------------------------------ cp recursive


def test_cp_recursive_uploads_a_tree_as_slash_separated_names(peer: PeerProc, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "tree", TREE)
    out = lines(dfs(peer, "cp", "--recursive", str(src), "dfs:up1/"))
    assert remote_hashes(peer, "up1/") == hashes(TREE)
    assert sorted(out[:-1]) == sorted(f"upload: {src / rel} to dfs:up1/{rel}" for rel in TREE)
    assert out[-1] == "copied 4 files (1.0 MiB), 0 unchanged, 0 failed"

    # A destination without the trailing slash is still a folder for a tree.
    doc = json_out(dfs(peer, "--json", "cp", "-r", str(src / "sub"), "dfs:up1-noslash"))
    assert set(remote_hashes(peer, "up1-noslash/")) == {"b.bin", "deep/c.txt"}
    assert (doc["copied"], doc["failed"], doc["bytes"]) == (2, 0, len(TREE["sub/b.bin"]) + len(TREE["sub/deep/c.txt"]))
    assert {(a["action"], a["status"]) for a in doc["actions"]} == {("upload", "done")}


def test_cp_recursive_downloads_a_prefix_into_a_directory_tree(peer: PeerProc, tmp_path: Path) -> None:
    ok(dfs(peer, "cp", "-r", str(make_tree(tmp_path / "tree", TREE)), "dfs:down2/src/"))
    for neighbour in ("down2/srcx", "down2/src2/x"):  # share the prefix's letters, not its folder
        ok(dfs(peer, "upload", "-", "--name", neighbour, stdin=b"not mine"))

    out = tmp_path / "out" / "nested"  # created, parents included
    said = lines(dfs(peer, "cp", "-r", "dfs:down2/src/", str(out)))
    assert local_files(out) == TREE
    assert said[-1] == "copied 4 files (1.0 MiB), 0 unchanged, 0 failed"
    assert not list(tmp_path.rglob("*.part")), "a temporary download file was left behind"

    again = tmp_path / "again"
    ok(dfs(peer, "cp", "-r", "dfs:down2/src", str(again)))  # no trailing slash: the same folder
    assert local_files(again) == TREE


# --------------------------------------------------------------------------------------- cp single


def test_cp_single_file_both_directions_and_into_a_prefix(peer: PeerProc, tmp_path: Path) -> None:
    src = tmp_path / "report.txt"
    src.write_bytes(b"quarterly numbers\n")
    assert lines(dfs(peer, "cp", str(src), "dfs:one3/named.txt")) == [
        f"upload: {src} to dfs:one3/named.txt",
        "copied 1 file (18 B), 0 unchanged, 0 failed",
    ]
    quiet = dfs(peer, "--quiet", "cp", str(src), "dfs:one3/folder/")  # into a prefix: keeps its basename
    assert ok(quiet) == b"" and quiet.stderr == b""
    assert set(remote_files(peer, "one3/")) == {"one3/named.txt", "one3/folder/report.txt"}

    ok(dfs(peer, "cp", "dfs:one3/named.txt", str(tmp_path / "back.txt")))
    assert (tmp_path / "back.txt").read_bytes() == src.read_bytes()
    into = tmp_path / "into"
    into.mkdir()
    ok(dfs(peer, "cp", "dfs:one3/folder/report.txt", str(into)))  # into a directory: keeps its basename
    assert (into / "report.txt").read_bytes() == src.read_bytes()
    ok(dfs(peer, "cp", "dfs:one3/named.txt", f"{tmp_path / 'fresh'}/"))  # a trailing slash: a directory
    assert (tmp_path / "fresh" / "named.txt").read_bytes() == src.read_bytes()

    ok(dfs(peer, "cp", "-", "dfs:one3/from-stdin", stdin=b"piped in"))
    piped = dfs(peer, "cp", "dfs:one3/from-stdin", "-")
    assert ok(piped) == b"piped in" and piped.stderr == b""

    assert "dfs:one3/missing: no such file" in fails(dfs(peer, "cp", "dfs:one3/missing", str(tmp_path)), 4)


# ----------------------------------------------------------------------------------------- filters


def test_include_and_exclude_apply_in_order_the_last_match_winning(peer: PeerProc, tmp_path: Path) -> None:
    src = make_tree(
        tmp_path / "tree", {"keep.txt": b"1", "skip.log": b"2", "sub/keep.txt": b"3", "sub/tmp/x.txt": b"4"}
    )
    only_txt = ("--exclude", "*", "--include", "*.txt", "--exclude", "sub/tmp/*")
    ok(dfs(peer, "cp", "-r", str(src), "dfs:filt4/a/", *only_txt))
    assert set(remote_files(peer, "filt4/a/")) == {"filt4/a/keep.txt", "filt4/a/sub/keep.txt"}

    # The same two filters the other way round: the exclude comes last and wins for every file.
    said = lines(dfs(peer, "cp", "-r", str(src), "dfs:filt4/b/", "--include", "*.txt", "--exclude", "*"))
    assert said == ["copied 0 files (0 B), 0 unchanged, 0 failed"]
    assert remote_files(peer, "filt4/b/") == {}

    out = tmp_path / "out"
    ok(dfs(peer, "cp", "-r", "dfs:filt4/a/", str(out), "--exclude", "sub/*"))
    assert local_files(out) == {"keep.txt": b"1"}


# ----------------------------------------------------------------------------------------- dry run


def test_dry_run_prints_each_transfer_and_moves_nothing(peer: PeerProc, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "tree", {"a.txt": b"a", "sub/b.txt": b"bb"})
    said = lines(dfs(peer, "cp", "-r", "--dry-run", str(src), "dfs:dry5/"))
    assert said[:-1] == [
        f"(dry run) upload: {src / 'a.txt'} to dfs:dry5/a.txt",
        f"(dry run) upload: {src / 'sub' / 'b.txt'} to dfs:dry5/sub/b.txt",
    ]
    assert said[-1] == "(dry run) would copy 2 files (3 B), 0 unchanged, 0 failed"
    assert remote_files(peer, "dry5/") == {}

    ok(dfs(peer, "cp", "-r", str(src), "dfs:dry5/"))
    out = tmp_path / "out"
    said = lines(dfs(peer, "cp", "-r", "-n", "dfs:dry5/", str(out)))
    assert said[0] == f"(dry run) download: dfs:dry5/a.txt to {out / 'a.txt'}"
    assert not out.exists()


# -------------------------------------------------------------------------------------------- jobs


def test_jobs_copies_many_files_in_parallel_under_one_progress_bar(peer: PeerProc, tmp_path: Path) -> None:
    files = {f"f{i:02}.bin": os.urandom(100 * 1024) for i in range(12)}
    src = make_tree(tmp_path / "tree", files)
    code, stdout, terminal = run_with_tty_stderr(
        [str(DFS), "--peer", peer.grpc_addr, "cp", "-r", "--jobs", "4", str(src), "dfs:jobs6/"]
    )
    assert code == 0, terminal
    assert remote_hashes(peer, "jobs6/") == hashes(files)
    assert stdout.decode().splitlines()[-1] == "copied 12 files (1.2 MiB), 0 unchanged, 0 failed"
    # One bar over the total of all files (12 x 100 KiB), not one bar per file.
    assert b"/ 1.2 MiB" in terminal and b"/ 100.0 KiB" not in terminal, terminal

    out = tmp_path / "out"
    ok(dfs(peer, "cp", "-r", "-j", "4", "dfs:jobs6/", str(out)))
    assert local_files(out) == files

    for bad in ("0", "65"):
        refused = dfs(peer, "cp", "-r", "--jobs", bad, str(src), "dfs:jobs6/")
        assert refused.returncode == 2 and b"Traceback" not in refused.stderr


# -------------------------------------------------------------------------------------------- sync


def test_sync_uploads_only_the_files_that_changed(peer: PeerProc, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "tree", {"same.txt": b"same", "edited.txt": b"aaaa", "grown.txt": b"g"})
    assert lines(dfs(peer, "sync", str(src), "dfs:sync7/"))[-1] == "copied 3 files (9 B), 0 unchanged, 0 failed"
    assert versions(peer, "sync7/") == {"same.txt": 1, "edited.txt": 1, "grown.txt": 1}

    (src / "edited.txt").write_bytes(b"bbbb")  # same size: only the SHA-256 tells
    (src / "grown.txt").write_bytes(b"grown")
    (src / "new.txt").write_bytes(b"new")
    said = lines(dfs(peer, "sync", str(src), "dfs:sync7/"))
    assert sorted(said[:-1]) == [f"upload: {src / n} to dfs:sync7/{n}" for n in ("edited.txt", "grown.txt", "new.txt")]
    assert said[-1] == "copied 3 files (12 B), 1 unchanged, 0 failed"
    assert versions(peer, "sync7/") == {"same.txt": 1, "edited.txt": 2, "grown.txt": 2, "new.txt": 1}
    assert remote_hashes(peer, "sync7/") == hashes(local_files(src))

    doc = json_out(dfs(peer, "--json", "sync", str(src), "dfs:sync7/"))
    assert (doc["copied"], doc["unchanged"], doc["failed"]) == (0, 4, 0)
    assert {a["status"] for a in doc["actions"]} == {"unchanged"}
    assert versions(peer, "sync7/") == {"same.txt": 1, "edited.txt": 2, "grown.txt": 2, "new.txt": 1}


def test_sync_delete_to_the_cluster_removes_what_the_directory_lacks(peer: PeerProc, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "tree", {"a.txt": b"a", "sub/b.txt": b"b"})
    ok(dfs(peer, "sync", str(src), "dfs:sdel8/"))
    for extra in ("sdel8/extra.txt", "sdel8/sub/old.txt", "sdel8/kept.log"):
        ok(dfs(peer, "upload", "-", "--name", extra, stdin=b"extra"))

    ok(dfs(peer, "sync", str(src), "dfs:sdel8/"))  # without --delete nothing goes
    assert len(remote_files(peer, "sdel8/")) == 5

    said = lines(dfs(peer, "sync", "--delete", "--exclude", "*.log", str(src), "dfs:sdel8/"))
    assert sorted(said[:-1]) == ["delete: dfs:sdel8/extra.txt", "delete: dfs:sdel8/sub/old.txt"]
    assert said[-1] == "copied 0 files (0 B), 2 unchanged, 0 failed, 2 deleted"
    assert set(remote_files(peer, "sdel8/")) == {"sdel8/a.txt", "sdel8/sub/b.txt", "sdel8/kept.log"}


def test_sync_from_the_cluster_rewrites_only_changed_files_and_deletes_stale_ones(
    peer: PeerProc, tmp_path: Path
) -> None:
    ok(dfs(peer, "cp", "-r", str(make_tree(tmp_path / "tree", TREE)), "dfs:sdown9/"))
    out = tmp_path / "out"
    assert lines(dfs(peer, "sync", "dfs:sdown9/", str(out)))[-1] == "copied 4 files (1.0 MiB), 0 unchanged, 0 failed"
    assert local_files(out) == TREE

    (out / "a.txt").write_bytes(b"ALPHA\n")  # same size, other bytes
    (out / "stale.txt").write_bytes(b"not in the cluster")
    untouched = (out / "sub" / "b.bin").stat().st_ino  # a rewrite would rename a new file over it
    said = lines(dfs(peer, "sync", "dfs:sdown9/", str(out)))
    assert said == [f"download: dfs:sdown9/a.txt to {out / 'a.txt'}", "copied 1 file (6 B), 3 unchanged, 0 failed"]
    assert (out / "sub" / "b.bin").stat().st_ino == untouched
    assert (out / "stale.txt").exists()

    said = lines(dfs(peer, "sync", "--delete", "dfs:sdown9/", str(out)))
    assert said == [f"delete: {out / 'stale.txt'}", "copied 0 files (0 B), 4 unchanged, 0 failed, 1 deleted"]
    assert local_files(out) == TREE


def test_sync_dry_run_changes_nothing_on_either_side(peer: PeerProc, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "tree", {"a.txt": b"a", "b.txt": b"b"})
    ok(dfs(peer, "sync", str(src), "dfs:sdry10/"))
    ok(dfs(peer, "upload", "-", "--name", "sdry10/extra.txt", stdin=b"extra"))
    (src / "b.txt").write_bytes(b"B")

    said = lines(dfs(peer, "sync", "--delete", "--dry-run", str(src), "dfs:sdry10/"))
    assert said == [
        f"(dry run) upload: {src / 'b.txt'} to dfs:sdry10/b.txt",
        "(dry run) delete: dfs:sdry10/extra.txt",
        "(dry run) would copy 1 file (1 B), 1 unchanged, 0 failed, 1 to delete",
    ]
    assert versions(peer, "sdry10/") == {"a.txt": 1, "b.txt": 1, "extra.txt": 1}

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "local-only").write_bytes(b"x")
    said = lines(dfs(peer, "sync", "--delete", "-n", "dfs:sdry10/", str(tmp_path / "out")))
    assert f"(dry run) delete: {tmp_path / 'out' / 'local-only'}" in said
    assert local_files(tmp_path / "out") == {"local-only": b"x"}


# ---------------------------------------------------------------------------------- remote to remote


def test_cp_between_remote_names_single_and_recursive(peer: PeerProc, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * CHUNK_SIZE + 77))
    ok(dfs(peer, "upload", str(big), "--name", "rr11/src/big.bin", "--content-type", "application/x-big"))
    ok(dfs(peer, "upload", "-", "--name", "rr11/src/sub/small.txt", stdin=b"small"))

    said = lines(dfs(peer, "cp", "dfs:rr11/src/big.bin", "dfs:rr11/copy.bin"))
    assert said[0] == "copy: dfs:rr11/src/big.bin to dfs:rr11/copy.bin"
    copied = json_out(dfs(peer, "--json", "info", "rr11/copy.bin"))
    assert copied["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    assert copied["content_type"] == "application/x-big"

    ok(dfs(peer, "cp", "-r", "dfs:rr11/src/", "dfs:rr11/mirror/"))
    assert remote_hashes(peer, "rr11/mirror/") == remote_hashes(peer, "rr11/src/")

    ok(dfs(peer, "upload", "-", "--name", "rr11/src/sub/small.txt", stdin=b"SMALL"))
    said = lines(dfs(peer, "sync", "dfs:rr11/src/", "dfs:rr11/mirror/"))
    assert said == ["copy: dfs:rr11/src/sub/small.txt to dfs:rr11/mirror/sub/small.txt",
                    "copied 1 file (5 B), 1 unchanged, 0 failed"]  # fmt: skip
    assert versions(peer, "rr11/mirror/") == {"big.bin": 1, "sub/small.txt": 2}


# ---------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        pytest.param(("cp", "{src}", "{tmp}/copy.txt"), "local paths", id="cp-local-to-local"),
        pytest.param(("sync", "{tmp}", "{tmp}/elsewhere"), "local paths", id="sync-local-to-local"),
        pytest.param(("cp", "{tmp}", "dfs:refused/"), "add --recursive", id="directory-without-recursive"),
        pytest.param(("cp", "dfs:refused/", "{tmp}"), "add --recursive", id="prefix-without-recursive"),
        pytest.param(("sync", "{src}", "dfs:refused/"), "not a directory", id="sync-a-single-file"),
        pytest.param(("cp", "-", "dfs:refused/"), "stdin has no name", id="stdin-into-a-folder"),
        pytest.param(("cp", "{tmp}/missing", "dfs:refused/"), "No such file", id="missing-source"),
    ],
)
def test_usage_errors_exit_2_with_one_line(peer: PeerProc, tmp_path: Path, args: tuple[str, ...], reason: str) -> None:
    src = tmp_path / "file.txt"
    src.write_bytes(b"x")
    argv = [a.format(src=src, tmp=tmp_path) for a in args]
    line = fails(dfs(peer, *argv), 2)
    assert reason in line, line
    assert remote_files(peer, "refused/") == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_a_remote_name_escaping_the_destination_is_refused(peer: PeerProc, tmp_path: Path) -> None:
    """Names are opaque keys to the cluster, so `../` is a legal name; it must never become a path."""
    for name in ("esc12/../evil.txt", "esc12//abs.txt", "esc12/ok.txt"):
        ok(dfs(peer, "upload", "-", "--name", name, stdin=b"payload"))
    dest = tmp_path / "jail" / "out"
    result = dfs(peer, "cp", "-r", "dfs:esc12/", str(dest))
    assert result.returncode == 2, result.stderr
    errors = result.stderr.decode().splitlines()
    assert len(errors) == 2 and all(e.startswith("dfs: error: download failed: dfs:esc12/") for e in errors), errors
    assert any("'../evil.txt': the name would escape the destination directory" in e for e in errors), errors
    assert any("'/abs.txt': the name would escape the destination directory" in e for e in errors), errors
    assert result.stdout.decode().splitlines()[-1] == "copied 1 file (7 B), 0 unchanged, 2 failed"
    assert local_files(tmp_path) == {"jail/out/ok.txt": b"payload"}, "nothing may be written outside out/"

    ok(dfs(peer, "upload", "-", "--name", "esc12-dots/..", stdin=b"payload"))
    single = dfs(peer, "cp", "dfs:esc12-dots/..", f"{dest}/")  # one file whose basename is ".."
    assert single.returncode == 2
    assert "'..': the name would escape the destination directory" in one_line(single.stderr)
    assert local_files(tmp_path) == {"jail/out/ok.txt": b"payload"}


def test_one_failing_file_does_not_stop_the_others(peer: PeerProc, tmp_path: Path) -> None:
    """A tab is legal in a local file name but not in a stored name: that one file fails, alone."""
    src = make_tree(tmp_path / "tree", {"good.txt": b"good", "bad\tname.txt": b"bad", "sub/fine.txt": b"fine"})
    result = dfs(peer, "cp", "-r", "--jobs", "2", str(src), "dfs:partial13/")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith(f"dfs: error: upload failed: {src}/bad\\tname.txt to dfs:partial13/bad\\tname.txt: ")
    assert "control characters" in line, line
    assert result.stdout.decode().splitlines()[-1] == "copied 2 files (8 B), 0 unchanged, 1 failed"
    assert set(remote_files(peer, "partial13/")) == {"partial13/good.txt", "partial13/sub/fine.txt"}
