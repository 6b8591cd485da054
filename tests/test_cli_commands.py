"""The command-line contract of `dfs` beyond single transfers: the real console script against real peers.

What a shell user and a script rely on: every mistake is one stderr line with a pointer to the help
and exit 2 (one JSON object with --json, wherever --json was given), global options work after the
sub-command, and the folder-style commands (ls, cat, rm) do what their names promise. One 2-peer
cluster serves the module; each test works under a name prefix of its own.
"""

from __future__ import annotations

import json
import os
import pty
import selectors
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.cluster import Cluster, PeerProc, shared_cluster
from tests.test_cli_integration import DFS, RUN_TIMEOUT_S, dfs, fails, json_out, ok

# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    with shared_cluster(tmp_path_factory, request, "cli-commands", peers=2, replicas=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def peer(cluster: Cluster) -> PeerProc:
    return cluster.peers[0]



def store(peer: PeerProc, files: dict[str, bytes]) -> None:
    """Puts test files in place through the SDK: what is under test is the command that reads them."""
    with peer.client() as client:
        for name, data in files.items():
            client.upload(data, name=name)


def stored_names(peer: PeerProc, prefix: str) -> set[str]:
    with peer.client() as client:
        return {f.name for f in client.list(prefix=prefix)}


def json_error(result: subprocess.CompletedProcess[bytes], code: int) -> dict[str, object]:
    """The one JSON object a failed run with --json printed on stderr, and nothing on stdout."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stdout == b""
    text = result.stderr.decode()
    assert text.endswith("\n") and text.count("\n") == 1, text
    document = json.loads(text)
    assert set(document) == {"error"} and set(document["error"]) == {"type", "message", "exit_code"}, document
    assert document["error"]["exit_code"] == code
    error: dict[str, object] = document["error"]
    return error


def run_on_terminal(cmd: Sequence[str], answer: bytes) -> tuple[int, bytes, bytes]:
    """Runs `cmd` with stdin and stderr on a pseudo-terminal, types `answer` once it asks [y/N];
    returns (exit code, stdout, everything the terminal showed)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(cmd, stdin=slave, stdout=subprocess.PIPE, stderr=slave)
    finally:
        os.close(slave)
    assert proc.stdout is not None
    stdout_fd = proc.stdout.fileno()
    outputs = {master: bytearray(), stdout_fd: bytearray()}
    answered = False
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        with selectors.DefaultSelector() as selector:
            for fd in outputs:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map() and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=1):
                    try:
                        data = os.read(key.fd, 65536)
                    except OSError:  # EIO: the child closed the terminal
                        data = b""
                    if not data:
                        selector.unregister(key.fd)
                        continue
                    outputs[key.fd] += data
                    if not answered and b"[y/N]" in outputs[master]:
                        os.write(master, answer)
                        answered = True
        proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(master)
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, bytes(outputs[stdout_fd]), bytes(outputs[master])


# ------------------------------------------------------------------------------- command-line mistakes


@pytest.mark.parametrize(
    ("args", "command"),
    [
        pytest.param(("--bogus", "status"), "dfs", id="unknown-global-option"),
        pytest.param(("upload", "f", "--bogus"), "dfs upload", id="unknown-option"),
        pytest.param(("uplod", "f"), "dfs", id="unknown-command"),
        pytest.param(("token", "mint"), "dfs token", id="unknown-nested-command"),
        pytest.param(("profile",), "dfs profile", id="group-without-command"),
        pytest.param(("download",), "dfs download", id="missing-argument"),
        pytest.param(("token", "create"), "dfs token create", id="missing-required-option"),
        pytest.param(("token", "create", "--role", "root"), "dfs token create", id="bad-choice"),
        pytest.param(("download", "x", "-", "--length", "lots"), "dfs download", id="bad-integer"),
        pytest.param(("--timeout", "-1", "status"), "dfs", id="bad-global-value"),
        pytest.param(("profile", "set", "w", "--peer"), "dfs profile set", id="option-without-value"),
        pytest.param(("upload", "-", "--name", ""), "dfs upload", id="empty-name"),
        pytest.param(("rm",), "dfs rm", id="rm-nothing"),
    ],
)
def test_every_mistake_is_one_line_and_exit_2(peer: PeerProc, args: tuple[str, ...], command: str) -> None:
    line = fails(dfs(peer, *args, stdin=b"x"), 2)
    assert line.endswith(f" (see '{command} --help')"), line


@pytest.mark.parametrize("where", ["before", "after"])
def test_with_json_every_failure_is_one_json_object(peer: PeerProc, where: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return dfs(peer, *(("--json", *args) if where == "before" else (*args, "--json")))

    usage = json_error(run("upload", "f", "--bogus"), 2)
    assert usage["type"] == "usage" and "--bogus" in str(usage["message"])
    nested = json_error(run("token", "create", "--role", "root"), 2)
    assert nested["type"] == "usage" and "root" in str(nested["message"])
    missing = json_error(run("info", "cmd/never-stored.txt"), 4)
    assert missing["type"] == "not_found" and "cmd/never-stored.txt" in str(missing["message"])
    unreachable = json_error(dfs(None, *(["--json"] if where == "before" else []), "status",
                                 "--peer", "127.0.0.1:1", *(["--json"] if where == "after" else [])), 3)  # fmt: skip
    assert unreachable["type"] == "peer_unreachable"


def test_global_options_after_the_command(peer: PeerProc, tmp_path: Path) -> None:
    """`dfs download x - --quiet` and `dfs list --json --peer HOST:PORT` work as users type them."""
    data = os.urandom(5000)
    store(peer, {"cmd/after.bin": data})
    assert ok(dfs(None, "download", "cmd/after.bin", "-", "--quiet", "--peer", peer.grpc_addr)) == data
    listed = json_out(dfs(None, "list", "--prefix", "cmd/after", "--json", "--peer", peer.grpc_addr))
    assert [f["name"] for f in listed["files"]] == ["cmd/after.bin"]
    me = json_out(dfs(None, "whoami", "--peer", peer.grpc_addr, "--timeout", "10", "--json"))
    assert me["role"] == "admin"  # the test peers run without authentication
    # After the command is later on the line, so it wins over the same option before it.
    assert json_out(dfs("127.0.0.1:1", "status", "--json", "--peer", peer.grpc_addr))["node_id"] == peer.node_id
    # An upload's own --name takes the next word whatever it looks like; -- ends the options.
    src = tmp_path / "f.txt"
    src.write_bytes(b"named")
    up = json_out(dfs(peer, "--json", "upload", str(src), "--name", "cmd/--quiet"))
    assert up["version"]["name"] == "cmd/--quiet"


def test_an_empty_name_is_refused(peer: PeerProc, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_bytes(b"x")
    line = fails(dfs(peer, "upload", str(src), "--name", ""), 2)
    assert "--name" in line and "empty" in line
    assert "" not in stored_names(peer, "")


# ------------------------------------------------------------------------------------------------ ls


LS_TREE = {
    "ls/a.txt": b"a",
    "ls/b.txt": b"bb",
    "ls/docs/readme.md": b"read me",
    "ls/photos/1.jpg": b"jpeg",
    "ls/photos/2019/x.jpg": b"older",
    "ls/photosX.txt": b"not a folder",
}


@pytest.fixture(scope="module")
def ls_tree(peer: PeerProc) -> dict[str, bytes]:
    store(peer, LS_TREE)
    return LS_TREE


def test_ls_lists_one_level_prefixes_first(peer: PeerProc, ls_tree: dict[str, bytes]) -> None:
    top = json_out(dfs(peer, "--json", "ls", "ls/"))
    assert top["prefixes"] == ["ls/docs/", "ls/photos/"]
    assert [f["name"] for f in top["files"]] == ["ls/a.txt", "ls/b.txt", "ls/photosX.txt"]
    assert [f["size"] for f in top["files"]] == [1, 2, 12]

    down = json_out(dfs(peer, "ls", "ls/photos/", "--json"))
    assert down == {"prefixes": ["ls/photos/2019/"], "files": [down["files"][0]]}
    assert down["files"][0]["name"] == "ls/photos/1.jpg"

    lines = ok(dfs(peer, "ls", "ls/")).decode().splitlines()
    assert lines[:2] == ["PRE  ls/docs/", "PRE  ls/photos/"]
    assert lines[2].split()[:3] == ["NAME", "VERSION", "SIZE"]
    assert [line.split()[0] for line in lines[3:]] == ["ls/a.txt", "ls/b.txt", "ls/photosX.txt"]
    assert lines[3].split()[2:4] == ["1", "B"]  # sizes in the one unit system


def test_ls_recursive_lists_every_file_under_the_prefix(peer: PeerProc, ls_tree: dict[str, bytes]) -> None:
    every = json_out(dfs(peer, "ls", "--recursive", "ls/photos", "--json"))
    assert every["prefixes"] == []
    assert [f["name"] for f in every["files"]] == ["ls/photos/1.jpg", "ls/photos/2019/x.jpg", "ls/photosX.txt"]
    lines = ok(dfs(peer, "ls", "-r", "ls/")).decode().splitlines()
    assert [line.split()[0] for line in lines[1:]] == sorted(ls_tree)


def test_ls_of_an_empty_prefix_prints_nothing(peer: PeerProc, ls_tree: dict[str, bytes]) -> None:
    assert json_out(dfs(peer, "--json", "ls", "ls/nothing-here/")) == {"prefixes": [], "files": []}
    empty = dfs(peer, "ls", "ls/nothing-here/")
    assert ok(empty) == b"" and empty.stderr == b""


# ----------------------------------------------------------------------------------------------- cat


def test_cat_writes_the_exact_bytes_of_each_version(peer: PeerProc) -> None:
    v1 = os.urandom(2 * 1024 * 1024 + 77)  # several chunks
    v2 = os.urandom(1000)
    store(peer, {"cmd/cat.bin": v1})
    store(peer, {"cmd/cat.bin": v2})
    latest = dfs(peer, "cat", "cmd/cat.bin")
    assert ok(latest) == v2 and latest.stderr == b""
    assert ok(dfs(peer, "cat", "cmd/cat.bin", "--version", "1")) == v1
    quiet = dfs(None, "cat", "cmd/cat.bin", "--version", "1", "--quiet", "--peer", peer.grpc_addr)
    assert ok(quiet) == v1
    with_json = dfs(peer, "cat", "cmd/cat.bin", "--json")
    assert ok(with_json) == v2 and json.loads(with_json.stderr)["bytes_written"] == len(v2)
    assert "cmd/no-such-file" in fails(dfs(peer, "cat", "cmd/no-such-file"), 4)


# ------------------------------------------------------------------------------------------------ rm


def test_rm_deletes_several_files_with_every_version(peer: PeerProc) -> None:
    store(peer, {"rm/one.txt": b"1", "rm/two.txt": b"2", "rm/keep.txt": b"k"})
    store(peer, {"rm/one.txt": b"1 again"})
    said = ok(dfs(peer, "rm", "rm/one.txt", "rm/two.txt")).decode().splitlines()
    assert said == ["deleted rm/one.txt (2 versions)", "deleted rm/two.txt (1 version)"]
    assert stored_names(peer, "rm/") == {"rm/keep.txt"}
    fails(dfs(peer, "info", "rm/one.txt"), 4)

    store(peer, {"rm/three.txt": b"3"})
    doc = json_out(dfs(peer, "rm", "rm/three.txt", "--json"))
    assert doc["dry_run"] is False and [v["name"] for v in doc["deleted"]] == ["rm/three.txt"]
    assert "rm/one.txt" in fails(dfs(peer, "rm", "rm/one.txt"), 4)


def test_rm_recursive_dry_run_removes_nothing(peer: PeerProc) -> None:
    tree = {"rm/dry/a": b"a", "rm/dry/sub/b": b"b", "rm/dryer": b"not under rm/dry/"}
    store(peer, tree)
    listed = ok(dfs(peer, "rm", "--recursive", "rm/dry/", "--dry-run")).decode().splitlines()
    assert [line.split()[4] for line in listed] == ["rm/dry/a", "rm/dry/sub/b"]
    assert all(line.startswith("(dry run) would delete ") for line in listed)
    doc = json_out(dfs(peer, "--json", "rm", "-r", "rm/dry/", "-n"))
    assert doc["dry_run"] is True and doc["deleted"] == []
    assert sorted(f["name"] for f in doc["would_delete"]) == ["rm/dry/a", "rm/dry/sub/b"]
    assert stored_names(peer, "rm/dry") == set(tree)


def test_rm_recursive_with_yes_deletes_only_under_the_prefix(peer: PeerProc) -> None:
    store(peer, {"rm/tree/a": b"a", "rm/tree/deep/b": b"b", "rm/treetop": b"sibling"})
    said = ok(dfs(peer, "rm", "--recursive", "rm/tree/", "--yes")).decode().splitlines()
    assert said == ["deleted rm/tree/a (1 version)", "deleted rm/tree/deep/b (1 version)"]
    assert stored_names(peer, "rm/tree") == {"rm/treetop"}
    # Without a terminal there is nobody to ask: a script's prefix delete goes ahead, as `rm` does.
    store(peer, {"rm/tree/c": b"c"})
    ok(dfs(peer, "rm", "--recursive", "rm/tree/"))
    assert stored_names(peer, "rm/tree") == {"rm/treetop"}


def test_rm_recursive_asks_on_a_terminal(peer: PeerProc) -> None:
    files = {"rm/ask/a": b"a" * 2048, "rm/ask/b": b"b", "rm/ask/c/d": b"d"}
    store(peer, files)
    cmd = [str(DFS), "--peer", peer.grpc_addr, "rm", "--recursive", "rm/ask/"]
    for answer in (b"n\n", b"\n"):  # no, and Enter (the default is no)
        code, stdout, terminal = run_on_terminal(cmd, answer)
        assert b"delete 3 files under 'rm/ask/' (2.0 KiB" in terminal, terminal
        assert code == 1 and stdout == b"", terminal
        assert b"dfs: error: not confirmed: nothing was deleted" in terminal
        assert stored_names(peer, "rm/ask/") == set(files)
    code, stdout, terminal = run_on_terminal(cmd, b"y\n")
    assert code == 0, terminal
    assert stdout.decode().count("deleted rm/ask/") == 3
    assert stored_names(peer, "rm/ask/") == set()
