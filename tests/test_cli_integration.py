"""The real `dfs` console script, run as a subprocess against real `dfs-peer serve` processes.

One 3-peer cluster serves the whole module (each peer takes about a second to start); every test
works on file names of its own, so the order the tests run in does not matter. What is checked is
the contract a shell user relies on: exit codes (2 bad arguments, 3 peer unreachable, 4 not found,
5 integrity, 6 cluster unavailable), exactly one `dfs: error:` line on stderr and never a traceback,
JSON documents with --json, and no progress bar unless stderr is a terminal.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import selectors
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client import InvalidArgument
from tests.cluster import Cluster, PeerProc, shared_cluster

DFS = Path(sys.executable).parent / "dfs"
RUN_TIMEOUT_S = 60
IEC_RATE = re.compile(rb"\d\.\d (KiB|MiB|GiB)/s")  # how fast depends on the machine, the unit system not
SI_UNIT = re.compile(rb"\d ?[kMGT]B\b")
CHUNK_SIZE = 1024 * 1024  # the peers' default --chunk-size


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """One converged 3-peer cluster (replicas 2) shared by the module; logs are printed if a test failed."""
    with shared_cluster(tmp_path_factory, request, "cli-cluster", peers=3, replicas=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def peer(cluster: Cluster) -> PeerProc:
    return cluster.peers[0]



@dataclass(frozen=True)
class TwoVersions:
    """A file uploaded twice through the CLI: the `--json` documents and the bytes of each version."""

    name: str
    v1: bytes
    v2: bytes
    up1: dict[str, Any]
    up2: dict[str, Any]


@pytest.fixture(scope="module")
def report(peer: PeerProc, tmp_path_factory: pytest.TempPathFactory) -> TwoVersions:
    """cli/report.bin: version 1 spans two chunks, version 2 is small. Tests only read it."""
    work = tmp_path_factory.mktemp("report")
    v1 = os.urandom(CHUNK_SIZE + 4321)
    v2 = os.urandom(3000)
    src = work / "report.bin"
    src.write_bytes(v1)
    up1 = json_out(dfs(peer, "--json", "upload", str(src), "--name", "cli/report.bin", "--meta", "team=ops"))
    src.write_bytes(v2)
    up2 = json_out(dfs(peer, "--json", "upload", str(src), "--name", "cli/report.bin"))
    return TwoVersions("cli/report.bin", v1, v2, up1, up2)


# ----------------------------------------------------------------------------------------- helpers


def dfs(
    peer: PeerProc | str | None,
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Runs `dfs [--peer ADDR] ARGS...` with piped stdout/stderr; DFS_PEER is unset unless `env` sets it."""
    cmd = [str(DFS)]
    if peer is not None:
        cmd += ["--peer", peer if isinstance(peer, str) else peer.grpc_addr]
    cmd += args
    full_env = {k: v for k, v in os.environ.items() if k != "DFS_PEER"}
    full_env.update(env or {})
    return subprocess.run(
        cmd,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        env=full_env,
        cwd=cwd,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[bytes]) -> bytes:
    """stdout of a run that must have succeeded."""
    assert result.returncode == 0, f"{result.args} exited {result.returncode}: {result.stderr.decode(errors='replace')}"
    return result.stdout


def json_out(result: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    doc = json.loads(ok(result))
    assert isinstance(doc, dict)
    return doc


def one_line(stderr: bytes) -> str:
    """The single line a failure prints: one `dfs: error:` line, nothing else, no traceback."""
    text = stderr.decode(errors="replace")
    assert "Traceback" not in text, text
    assert text.endswith("\n") and text.count("\n") == 1, f"expected exactly one stderr line, got {text!r}"
    assert text.startswith("dfs: error: "), text
    return text.rstrip("\n")


def fails(result: subprocess.CompletedProcess[bytes], code: int) -> str:
    """The one stderr line of a run that must have failed with exit code `code`."""
    assert result.returncode == code, (
        f"{result.args} exited {result.returncode}, expected {code}; stderr {result.stderr!r}"
    )
    assert result.stdout == b"", f"a failure printed {result.stdout[:200]!r} on stdout"
    return one_line(result.stderr)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_with_tty_stderr(cmd: Sequence[str]) -> tuple[int, bytes, bytes]:
    """Runs `cmd` with stderr on a pseudo-terminal of 100 columns; returns (exit code, stdout, terminal output)."""
    master, slave = pty.openpty()
    try:
        # A fresh pty is 0 columns wide; give it a real size as a terminal emulator would.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    finally:
        os.close(slave)
    assert proc.stdout is not None
    stdout_fd = proc.stdout.fileno()
    outputs = {master: bytearray(), stdout_fd: bytearray()}
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        # Both at once: a command that fills the stdout pipe would otherwise block before closing the terminal.
        with selectors.DefaultSelector() as selector:
            for fd in outputs:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map() and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=1):
                    try:
                        data = os.read(key.fd, 65536)
                    except OSError:  # EIO: the child closed the terminal
                        data = b""
                    if data:
                        outputs[key.fd] += data
                    else:
                        selector.unregister(key.fd)
        proc.wait(timeout=max(deadline - time.monotonic(), 1))
        proc.stdout.close()
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, bytes(outputs[stdout_fd]), bytes(outputs[master])


# ------------------------------------------------------------------------------- upload and read


def test_upload_json_reports_numbered_versions_and_sha256(report: TwoVersions, cluster: Cluster) -> None:
    node_ids = {p.node_id for p in cluster.peers}
    for number, doc, data in ((1, report.up1, report.v1), (2, report.up2, report.v2)):
        v = doc["version"]
        assert v["name"] == report.name
        assert v["version"] == number
        assert v["latest"] is True
        assert v["size"] == len(data)
        assert v["sha256"] == sha256(data)
        assert v["chunk_count"] == len(v["chunks"]) == -(-len(data) // CHUNK_SIZE)
        assert sum(c["size"] for c in v["chunks"]) == len(data)
        for chunk in v["chunks"]:
            assert len(set(chunk["peers"])) == 2, chunk  # replicas 2, on distinct peers
            assert set(chunk["peers"]) <= node_ids
        assert set(doc["peers"]) == {p for c in v["chunks"] for p in c["peers"]}
    assert report.up1["version"]["metadata"] == {"team": "ops"}
    assert report.up1["version"]["file_id"] == report.up2["version"]["file_id"]
    assert report.up1["version"]["version_id"] != report.up2["version"]["version_id"]


def test_upload_without_json_prints_one_confirmation_and_no_progress_bar(peer: PeerProc, tmp_path: Path) -> None:
    """Piped stderr is not a terminal, so neither upload nor download may draw a tqdm bar there."""
    data = os.urandom(2 * CHUNK_SIZE + 17)
    src = tmp_path / "piped.bin"
    src.write_bytes(data)
    up = dfs(peer, "upload", str(src), "--name", "cli/piped.bin")
    assert ok(up).decode().startswith("uploaded cli/piped.bin version 1 ")
    assert up.stdout.count(b"\n") == 1
    assert up.stderr == b""
    down = dfs(peer, "download", "cli/piped.bin", str(tmp_path / "back.bin"))
    assert ok(down).decode().startswith("downloaded cli/piped.bin version 1 ")
    assert down.stderr == b""
    assert (tmp_path / "back.bin").read_bytes() == data
    to_stdout = dfs(peer, "download", "cli/piped.bin", "-")
    assert ok(to_stdout) == data
    assert to_stdout.stderr == b""


def test_progress_bar_appears_only_on_a_terminal(peer: PeerProc, tmp_path: Path) -> None:
    """The control for the test above: the same upload with stderr on a terminal does draw a bar,
    and bar and summary count in IEC units (MiB, MiB/s) like every other size the CLI prints."""
    src = tmp_path / "tty.bin"
    src.write_bytes(os.urandom(8 * CHUNK_SIZE + 1))
    code, stdout, terminal = run_with_tty_stderr(
        [str(DFS), "--peer", peer.grpc_addr, "upload", str(src), "--name", "cli/tty.bin"]
    )
    assert code == 0, terminal
    assert stdout.startswith(b"uploaded cli/tty.bin version 1 (8.0 MiB, 9 chunks ")
    assert b"%|" in terminal and b"/ 8.0 MiB" in terminal and IEC_RATE.search(terminal), terminal
    assert not SI_UNIT.search(terminal), terminal
    for command in (["download", "cli/tty.bin", str(tmp_path / "back.bin")], ["cat", "cli/tty.bin"]):
        code, stdout, terminal = run_with_tty_stderr([str(DFS), "--peer", peer.grpc_addr, *command])
        assert code == 0, terminal
        assert b"/ 8.0 MiB" in terminal and IEC_RATE.search(terminal), (command, terminal)
        assert not SI_UNIT.search(terminal), (command, terminal)
    assert stdout == src.read_bytes()  # cat: the bytes on stdout, the bar on the terminal
    code, stdout, terminal = run_with_tty_stderr(
        [str(DFS), "--peer", peer.grpc_addr, "--quiet", "upload", str(src), "--name", "cli/tty.bin"]
    )
    assert code == 0, terminal
    assert stdout == b"" and terminal == b"", (stdout, terminal)


def test_upload_from_stdin_needs_a_name(peer: PeerProc) -> None:
    data = os.urandom(70_000)
    doc = json_out(dfs(peer, "--json", "upload", "-", "--name", "cli/stdin.bin", stdin=data))
    assert doc["version"]["version"] == 1
    assert doc["version"]["size"] == len(data)
    assert doc["version"]["sha256"] == sha256(data)
    assert ok(dfs(peer, "download", "cli/stdin.bin", "-")) == data

    empty = json_out(dfs(peer, "--json", "upload", "-", "--name", "cli/empty.bin", stdin=b""))
    assert (empty["version"]["size"], empty["version"]["sha256"]) == (0, sha256(b""))
    assert ok(dfs(peer, "download", "cli/empty.bin", "-")) == b""

    # A usage error: one line with a pointer to the command's help, exit 2.
    line = fails(dfs(peer, "upload", "-", stdin=b"abc"), 2)
    assert line == "dfs: error: --name is required when uploading from stdin (see 'dfs upload --help')"


def test_list_prefix(peer: PeerProc, report: TwoVersions, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.txt"
    other.write_bytes(b"not under cli/")
    ok(dfs(peer, "upload", str(other), "--name", "elsewhere/file.txt"))
    listed = json_out(dfs(peer, "--json", "list", "--prefix", "cli/report"))["files"]
    assert [(f["name"], f["version"], f["sha256"]) for f in listed] == [(report.name, 2, sha256(report.v2))]
    names = {f["name"] for f in json_out(dfs(peer, "--json", "list", "--prefix", "elsewhere/"))["files"]}
    assert names == {"elsewhere/file.txt"}
    assert json_out(dfs(peer, "--json", "list", "--prefix", "no-such-prefix/"))["files"] == []
    text = ok(dfs(peer, "list", "--prefix", "cli/report")).decode()
    assert report.name in text and "elsewhere/file.txt" not in text


def test_info_shows_latest_or_chosen_version(peer: PeerProc, report: TwoVersions) -> None:
    latest = json_out(dfs(peer, "--json", "info", report.name))
    assert latest["version"] == 2 and latest["latest"] is True
    assert latest["version_id"] == report.up2["version"]["version_id"]
    assert latest["sha256"] == sha256(report.v2)
    assert latest["chunks"] == report.up2["version"]["chunks"]
    first = json_out(dfs(peer, "--json", "info", report.name, "--version", "1"))
    assert first["version"] == 1 and first["latest"] is False
    assert first["sha256"] == sha256(report.v1)
    assert first["chunks"] == report.up1["version"]["chunks"]
    text = ok(dfs(peer, "info", report.name)).decode()
    assert report.up2["version"]["version_id"] in text and sha256(report.v2) in text


def test_versions_newest_first(peer: PeerProc, report: TwoVersions) -> None:
    found = json_out(dfs(peer, "--json", "versions", report.name))["versions"]
    assert [(v["version"], v["latest"], v["sha256"]) for v in found] == [
        (2, True, sha256(report.v2)),
        (1, False, sha256(report.v1)),
    ]
    rows = ok(dfs(peer, "versions", report.name)).decode().splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["2", "1"]


def test_download_to_path_stdout_version_and_file_id(peer: PeerProc, report: TwoVersions, tmp_path: Path) -> None:
    out = tmp_path / "latest.bin"
    doc = json_out(dfs(peer, "--json", "download", report.name, str(out)))
    assert out.read_bytes() == report.v2
    assert doc["bytes_written"] == len(report.v2) and doc["path"] == str(out)
    assert doc["version"]["version"] == 2

    to_stdout = dfs(peer, "download", report.name, "-")
    assert ok(to_stdout) == report.v2 == out.read_bytes()
    assert to_stdout.stderr == b""

    # With --json and `-` the bytes own stdout, so the document goes to stderr.
    json_stdout = dfs(peer, "--json", "download", report.name, "-")
    assert ok(json_stdout) == report.v2
    assert json.loads(json_stdout.stderr)["bytes_written"] == len(report.v2)

    assert ok(dfs(peer, "download", report.name, "-", "--version", "1")) == report.v1
    v1_id = report.up1["version"]["version_id"]
    assert ok(dfs(peer, "download", report.name, "-", "--version", v1_id)) == report.v1
    file_id = report.up2["version"]["file_id"]
    assert ok(dfs(peer, "download", file_id, "-")) == report.v2
    assert ok(dfs(peer, "download", file_id, "-", "--version", "1")) == report.v1

    # No OUT: the stored name's basename in the working directory; a directory OUT: inside it.
    ok(dfs(peer, "download", report.name, cwd=tmp_path))
    assert (tmp_path / "report.bin").read_bytes() == report.v2
    (tmp_path / "into").mkdir()
    ok(dfs(peer, "download", report.name, str(tmp_path / "into"), "--version", "1"))
    assert (tmp_path / "into" / "report.bin").read_bytes() == report.v1
    assert not list(tmp_path.rglob("*.part")), "a temporary download file was left behind"


def test_download_through_every_peer(cluster: Cluster, report: TwoVersions) -> None:
    """Any peer serves any file, whichever peers hold its chunks."""
    for p in cluster.peers:
        assert ok(dfs(p, "download", report.name, "-", "--version", "1")) == report.v1


# ------------------------------------------------------------------------------------------ delete


def test_delete_one_version_then_the_file(peer: PeerProc, tmp_path: Path) -> None:
    name = "cli/doomed.txt"
    src = tmp_path / "doomed.txt"
    src.write_bytes(b"first\n")
    ok(dfs(peer, "upload", str(src), "--name", name))
    src.write_bytes(b"second\n")
    ok(dfs(peer, "upload", str(src), "--name", name))

    deleted = json_out(dfs(peer, "--json", "delete", name, "--version", "1"))["deleted"]
    assert [d["version"] for d in deleted] == [1]
    remaining = json_out(dfs(peer, "--json", "versions", name))["versions"]
    assert [v["version"] for v in remaining] == [2]
    assert ok(dfs(peer, "download", name, "-")) == b"second\n"
    assert "not found" in fails(dfs(peer, "download", name, "-", "--version", "1"), 4)

    said = ok(dfs(peer, "delete", name)).decode()
    assert said.startswith(f"deleted {name} version 2 ") and said.count("\n") == 1
    line = fails(dfs(peer, "info", name), 4)
    assert name in line
    fails(dfs(peer, "versions", name), 4)
    fails(dfs(peer, "download", name, str(tmp_path / "gone.txt")), 4)
    assert not (tmp_path / "gone.txt").exists()
    fails(dfs(peer, "delete", name), 4)
    assert json_out(dfs(peer, "--json", "list", "--prefix", name))["files"] == []


# ------------------------------------------------------------------------------- cluster and peer


def test_status_json_lists_three_alive_members_with_one_ring(cluster: Cluster) -> None:
    node_ids = {p.node_id for p in cluster.peers}
    digests = set()
    for p in cluster.peers:
        doc = json_out(dfs(p, "--json", "status"))
        assert doc["node_id"] == p.node_id
        assert doc["replicas"] == 2
        assert {m["node_id"] for m in doc["members"]} == node_ids
        assert all(m["state"] == "alive" and m["on_ring"] for m in doc["members"]), doc["members"]
        addrs = {m["node_id"]: (m["grpc_addr"], m["gossip_addr"]) for m in doc["members"]}
        assert addrs == {q.node_id: (q.grpc_addr, q.gossip_addr) for q in cluster.peers}
        assert doc["metadata_healthy"] is True
        digests.add(doc["ring_digest"])
    assert len(digests) == 1 and "" not in digests
    text = ok(dfs(cluster.peers[0], "status")).decode()
    assert next(iter(digests)) in text


@pytest.fixture
def refusing_address() -> Iterator[str]:
    """An address on which nothing listens: the port stays bound, unlistened, while in use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def test_dfs_peer_environment_variable(peer: PeerProc, refusing_address: str) -> None:
    via_env = json_out(dfs(None, "--json", "status", env={"DFS_PEER": peer.grpc_addr}))
    assert via_env["node_id"] == peer.node_id

    line = fails(dfs(None, "--timeout", "10", "status", env={"DFS_PEER": refusing_address}), 3)
    assert refusing_address in line

    # --peer on the command line wins over the environment.
    overridden = dfs(peer, "--json", "status", env={"DFS_PEER": refusing_address})
    assert json_out(overridden)["node_id"] == peer.node_id


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("download", "x", "-", "--version", "0"), id="version-0"),
        pytest.param(("info", "x", "--version", "-3"), id="negative-version"),
        pytest.param(("info", "cli/report.bin", "--version", "not-an-id"), id="malformed-version-id"),
        pytest.param(("upload", "{src}", "--name", "bad\x01name"), id="control-char-name"),
        pytest.param(("upload", "{src}", "--name", "bad\nname"), id="newline-name"),
        pytest.param(("upload", "{src}", "--name", "n" * 2000), id="2000-byte-name"),
        pytest.param(("upload", "{src}", "--name", "é" * 600), id="1200-utf8-byte-name"),
        pytest.param(("info", "n" * 2000), id="2000-byte-ref"),
        pytest.param(("upload", "{missing}"), id="missing-local-file"),
        pytest.param(("download", "cli/report.bin", "-", "--offset", "99999999"), id="offset-past-the-end"),
        pytest.param(("download", "cli/report.bin", "{missing}/out.bin"), id="missing-output-directory"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    peer: PeerProc, report: TwoVersions, tmp_path: Path, args: tuple[str, ...]
) -> None:
    src = tmp_path / "small.txt"
    src.write_bytes(b"x")
    argv = [a.format(src=src, missing=tmp_path / "missing") for a in args]
    fails(dfs(peer, *argv), 2)
    if "--name" in argv:
        rejected = argv[argv.index("--name") + 1]
        stored = {f["name"] for f in json_out(dfs(peer, "--json", "list"))["files"]}
        assert rejected not in stored, "a rejected upload stored a version"


@pytest.mark.parametrize("name", ["nul\x00inside", "\x00", "tab\tname", "del\x7fname", "n" * 2000])
def test_sdk_rejects_bad_names_as_invalid_argument(peer: PeerProc, name: str) -> None:
    """A NUL cannot cross argv at all, so names the CLI cannot even express are sent through the SDK."""
    with peer.client(timeout=10) as client:
        with pytest.raises(InvalidArgument) as info:
            client.upload(b"payload", name=name)
        assert info.value.exit_code == 2
        assert "\n" not in str(info.value)
        with pytest.raises(InvalidArgument):
            client.stat(name)


def test_insufficient_replicas_exit_6(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    lone = make_cluster(1, replicas=2).peers[0]
    src = tmp_path / "wants-two.txt"
    src.write_bytes(b"needs two peers")
    line = fails(dfs(lone, "upload", str(src)), 6)
    assert "policy rep:2 needs 2 peers, 1 is usable" in line, line
    as_json = dfs(lone, "--json", "upload", "-", "--name", "wants-two.txt", stdin=b"x")
    assert as_json.returncode == 6 and as_json.stdout == b""
    assert json.loads(as_json.stderr)["error"]["type"] == "cluster_unavailable"
    fails(dfs(lone, "info", "wants-two.txt"), 4)  # nothing was committed


# ----------------------------------------------------------------------------------------- integrity


def test_download_with_every_copy_of_a_chunk_corrupt_exits_5(cluster: Cluster, peer: PeerProc, tmp_path: Path) -> None:
    """One rotten copy is survivable; when every copy of one chunk is rotten the CLI exits 5.

    The peers' background repair may restore a quarantined copy from an intact one at any time, so
    the two cases use different chunks: the copies of chunk 1 are all corrupted at once, while no
    intact copy of it exists anywhere to be copied back.
    """
    data = os.urandom(2 * CHUNK_SIZE + 999)
    src = tmp_path / "fragile.bin"
    src.write_bytes(data)
    ok(dfs(peer, "upload", str(src), "--name", "cli/fragile.bin"))
    chunks = json_out(dfs(peer, "--json", "info", "cli/fragile.bin"))["chunks"]
    assert len(chunks) == 3

    def copies(chunk_id: str) -> list[tuple[PeerProc, Path]]:
        """Every copy on any peer's disk, recorded holder or not."""
        found = [(p, p.chunk_path(chunk_id)) for p in cluster.peers]
        return [(p, path) for p, path in found if path.is_file()]

    def corrupt(path: Path) -> None:
        good = path.read_bytes()
        path.write_bytes(bytes(b ^ 0xFF for b in good[:64]) + good[64:])  # same size, wrong bytes

    first = chunks[0]["chunk_id"]
    assert {p.node_id for p, _ in copies(first)} == set(chunks[0]["peers"])
    corrupt(copies(first)[0][1])
    for p in cluster.peers:  # the intact copy is found, whichever peer serves the download
        assert ok(dfs(p, "download", "cli/fragile.bin", "-")) == data

    victim = chunks[1]["chunk_id"]
    rotten = copies(victim)
    assert {p.node_id for p, _ in rotten} == set(chunks[1]["peers"]) and len(rotten) == 2
    for _, path in rotten:
        corrupt(path)
    out = tmp_path / "fragile.out"
    line = fails(dfs(peer, "download", "cli/fragile.bin", str(out)), 5)
    assert f"no intact copy of chunk {victim}" in line, line
    assert not out.exists(), "a download that failed verification must not leave the target file"
    assert not list(tmp_path.glob("*.part")), "the temporary download file was left behind"

    piped = dfs(cluster.peers[2], "download", "cli/fragile.bin", "-")
    assert piped.returncode == 5, piped.stderr
    one_line(piped.stderr)
    assert piped.stdout != data
    for holder, _ in rotten:  # each bad copy was moved aside for inspection, not served and not deleted
        assert list((holder.data_dir / "quarantine").glob(f"{victim}.*")), holder.data_dir
    # The first chunk is intact, so a range inside it still downloads.
    assert ok(dfs(peer, "download", "cli/fragile.bin", "-", "--length", "1000")) == data[:1000]
