"""`dfs-peer cluster up|down|status|stop|start` through the real console script and real peers.

The local cluster must run like a service: it returns once the ring agrees, its peers outlive the
command, one peer can fail and come back while the others serve, and nothing is left running after
`down` (or after the starting command is killed). Ports follow the documented scheme from a base
below 32768, chosen so every port a test needs is free.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from client.sdk import DfsClient
from peer.errors import ConfigError
from peer.localcluster.ports import LISTENERS, MAX_PEERS, PortScheme
from tests.waiting import wait_until_sync

DFS_PEER = [sys.executable, "-m", "peer"]


def free_base(peers: int) -> int:
    """A base port below 32768 whose gRPC, gossip, internal and S3 ports for `peers` peers are all free."""
    kinds = ("grpc", "gossip", "internal", "s3")
    for base in range(20000 + (os.getpid() % 40) * 160, 32000 - MAX_PEERS * len(LISTENERS), 331):
        ports = [PortScheme(base).port(kind, k) for kind in kinds for k in range(1, peers + 1)]
        if all(_free(p) for p in ports):
            return base
    raise RuntimeError("no free base port below 32768")


def _free(port: int) -> bool:
    try:
        with socket.create_server(("127.0.0.1", port)):
            return True
    except OSError:
        return False


def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DFS_PEER, "cluster", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def status(base: Path) -> list[dict[str, object]]:
    result = run("status", "--dir", str(base), "--json")
    assert result.returncode == 0, result.stderr
    peers: list[dict[str, object]] = json.loads(result.stdout)["peers"]
    return peers


def pids(base: Path) -> list[int]:
    return list(json.loads((base / "cluster.json").read_text())["pids"].values())


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    """The cluster's directory; whatever a test leaves running there is stopped, then SIGKILLed."""
    base = tmp_path / "cluster"
    yield base
    if (base / "cluster.json").exists():
        run("down", "--dir", str(base))
        for pid in pids(base):
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_port_scheme_never_collides_up_to_64_peers() -> None:
    scheme = PortScheme(50051)
    ports = [scheme.port(kind, k) for kind in LISTENERS for k in range(1, MAX_PEERS + 1)]
    assert len(set(ports)) == len(ports)
    assert [scheme.port("grpc", k) for k in (1, 2, 3)] == [50051, 50052, 50053]
    with pytest.raises(ConfigError, match="--base-port"):
        PortScheme(65500)
    with pytest.raises(ConfigError, match="peer 65"):
        scheme.port("grpc", 65)


def test_background_cluster_survives_a_stopped_peer_and_takes_it_back(cluster_dir: Path, tmp_path: Path) -> None:
    base_port = free_base(3)
    up = run("up", "--peers", "3", "--dir", str(cluster_dir), "--base-port", str(base_port))
    assert up.returncode == 0, up.stderr
    addrs = up.stdout.split()
    assert addrs == [f"127.0.0.1:{base_port + k}" for k in range(3)]  # the command returned; peers run on
    endpoints = [f"http://127.0.0.1:{base_port + 192 + k}" for k in range(3)]
    assert [line for line in up.stderr.splitlines() if "S3 endpoint" in line] == [
        f"peer {k + 1}: gRPC {addrs[k]}, S3 endpoint {endpoints[k]}" for k in range(3)]
    credentials = cluster_dir.resolve() / "s3-credentials"
    assert f"AWS_SHARED_CREDENTIALS_FILE={credentials} aws --endpoint-url {endpoints[0]} s3 ls" in up.stderr
    peers = status(cluster_dir)
    assert [p["running"] for p in peers] == [True] * 3 and {p["state"] for p in peers} == {"alive"}
    assert [p["s3_endpoint"] for p in peers] == endpoints
    assert [p["gossip_addr"] for p in peers] == [f"127.0.0.1:{base_port + 64 + k}" for k in range(3)]
    assert all((cluster_dir / f"peer{k}" / "peer.log").stat().st_size > 0 for k in (1, 2, 3))

    data = os.urandom(3 * 1024 * 1024 + 17)
    with DfsClient(addrs[0], timeout=30) as c:
        c.upload(data, name="kept.bin")

    stopped = run("stop", "--dir", str(cluster_dir), "--peer", "2")
    assert stopped.returncode == 0, stopped.stderr
    peers = status(cluster_dir)
    assert [p["running"] for p in peers] == [True, False, True]
    assert peers[1]["state"] in ("left", "dead", "suspect")
    with DfsClient(addrs[2], timeout=30) as c:
        assert c.read("kept.bin") == data

    started = run("start", "--dir", str(cluster_dir), "--peer", "2")
    assert started.returncode == 0, started.stderr
    assert started.stdout.split() == [addrs[1]]
    peers = status(cluster_dir)
    assert [p["running"] for p in peers] == [True] * 3 and {p["state"] for p in peers} == {"alive"}
    with DfsClient(addrs[1], timeout=30) as c:
        assert c.read("kept.bin") == data

    down = run("down", "--dir", str(cluster_dir))
    assert down.returncode == 0, down.stderr
    assert not any(running(pid) for pid in pids(cluster_dir))
    assert [p["running"] for p in status(cluster_dir)] == [False] * 3


def test_a_directory_with_a_running_cluster_is_refused(cluster_dir: Path) -> None:
    base_port = free_base(2)
    first = run("up", "--peers", "2", "--dir", str(cluster_dir), "--base-port", str(base_port), "--json")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert [p["grpc_addr"] for p in doc["peers"]] == [f"127.0.0.1:{base_port}", f"127.0.0.1:{base_port + 1}"]
    assert [p["s3_endpoint"] for p in doc["peers"]] == [f"http://127.0.0.1:{base_port + 192 + k}" for k in range(2)]
    assert doc["replicas"] == 2 and doc["ring_digest"]
    second = run("up", "--peers", "2", "--dir", str(cluster_dir), "--base-port", str(free_base(2)))
    assert second.returncode != 0
    assert second.stderr.strip().splitlines() == [second.stderr.strip()]
    assert "already running" in second.stderr and "cluster down" in second.stderr
    assert all(running(pid) for pid in pids(cluster_dir))  # the running cluster is untouched


def test_a_peer_that_cannot_start_says_why_and_nothing_is_left_running(cluster_dir: Path) -> None:
    base_port = free_base(3)
    with socket.create_server(("127.0.0.1", base_port + 1)):  # peer 2's gRPC port is taken
        result = run("up", "--peers", "3", "--dir", str(cluster_dir), "--base-port", str(base_port))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"dfs-peer: error: peer 2 did not start: cannot listen for gRPC on 127.0.0.1:{base_port + 1}: "
        "Address already in use"
    )
    wait_until_sync(lambda: not any(running(pid) for pid in pids(cluster_dir)), 15,
                    describe=lambda: f"still running: {[p for p in pids(cluster_dir) if running(p)]}")


def test_the_replication_factor_is_never_lowered(cluster_dir: Path) -> None:
    result = run("up", "--peers", "1", "--dir", str(cluster_dir), "--base-port", str(free_base(1)))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--replicas 2" in result.stderr
    assert not (cluster_dir / "cluster.json").exists()

    one = run("up", "--peers", "1", "--replicas", "1", "--dir", str(cluster_dir), "--base-port", str(free_base(1)))
    assert one.returncode == 0, one.stderr
    with DfsClient(one.stdout.split()[0], timeout=30) as c:
        assert c.upload(b"one copy", name="r1").version.size == 8


def test_a_peer_short_of_its_replicas_refuses_uploads_naming_the_setting(cluster_dir: Path) -> None:
    up = run("up", "--peers", "2", "--dir", str(cluster_dir), "--base-port", str(free_base(2)))
    assert up.returncode == 0, up.stderr
    assert run("stop", "--dir", str(cluster_dir), "--peer", "2").returncode == 0
    with DfsClient(up.stdout.split()[0], timeout=30) as c:
        with pytest.raises(Exception, match="--replicas 2"):  # noqa: B017 - the SDK's ClusterUnavailable
            c.upload(b"x" * 100, name="refused")


class Foreground:
    """`cluster up --foreground` in the background of the test, its stderr collected line by line.

    Started as a shell starts a background job, with SIGINT ignored: Ctrl-C (SIGINT) must stop it all
    the same, and the test must not depend on how pytest itself was started."""

    def __init__(self, base: Path, base_port: int) -> None:
        self.proc = subprocess.Popen(
            [*DFS_PEER, "cluster", "up", "--peers", "3", "--dir", str(base), "--base-port", str(base_port),
             "--foreground"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        self.err: list[str] = []
        self.out: list[str] = []
        self.readers = [threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
                        for stream, sink in ((self.proc.stderr, self.err), (self.proc.stdout, self.out))]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _drain(stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line.rstrip("\n"))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for reader in self.readers:  # both pipes are at EOF once the process and its children are gone
            reader.join(timeout=30)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        wait_until_sync(lambda: any(text in line for line in self.err), timeout,
                        describe=lambda: f"stderr so far: {self.err}")


def test_foreground_reports_a_dead_peer_and_keeps_the_others(cluster_dir: Path) -> None:
    fg = Foreground(cluster_dir, free_base(3))
    try:
        fg.wait_for("Ctrl-C stops the cluster")
        victim = pids(cluster_dir)[1]
        os.kill(victim, signal.SIGKILL)
        fg.wait_for(f"peer 2 (pid {victim}) stopped: killed by SIGKILL")
        assert fg.proc.poll() is None
        with DfsClient(fg.out[0], timeout=30) as c:
            c.upload(b"still serving", name="after-kill")  # R=2 on the two peers left
        fg.proc.send_signal(signal.SIGINT)
        assert fg.proc.wait(timeout=60) == 0
        assert not any(running(pid) for pid in pids(cluster_dir))
    finally:
        fg.close()


def test_killing_the_foreground_command_leaves_no_orphans(cluster_dir: Path) -> None:
    fg = Foreground(cluster_dir, free_base(3))
    try:
        fg.wait_for("Ctrl-C stops the cluster")
        fg.proc.send_signal(signal.SIGKILL)
        fg.proc.wait(timeout=10)
        wait_until_sync(lambda: not any(running(pid) for pid in pids(cluster_dir)), 30,
                        describe=lambda: f"orphans: {[p for p in pids(cluster_dir) if running(p)]}")
        assert not any(running(pid) for pid in pids(cluster_dir))
    finally:
        fg.close()


def test_down_stops_peers_whose_starting_command_is_gone(cluster_dir: Path) -> None:
    up = run("up", "--peers", "2", "--dir", str(cluster_dir), "--base-port", str(free_base(2)))
    assert up.returncode == 0, up.stderr
    started = pids(cluster_dir)
    assert all(running(pid) for pid in started)
    t0 = time.monotonic()
    down = run("down", "--dir", str(cluster_dir))
    assert down.returncode == 0 and "stopped peers 1, 2" in down.stderr
    assert not any(running(pid) for pid in started), f"after {time.monotonic() - t0:.1f} s"
    again = run("down", "--dir", str(cluster_dir))
    assert again.returncode == 0 and "no peer was running" in again.stderr


def test_tls_and_auth_cluster_is_reachable_with_the_files_it_wrote(cluster_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    base_port = free_base(2)
    up = run("up", "--peers", "2", "--dir", str(cluster_dir), "--base-port", str(base_port), "--tls", "--auth")
    assert up.returncode == 0, up.stderr
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(cluster_dir / "s3-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(cluster_dir / "no-aws-config"))
    assert f"--tls-ca {cluster_dir.resolve() / 'certs' / 'ca.crt'}" in up.stderr
    peers = status(cluster_dir)  # status itself needs the CA and the admin token
    assert {p["state"] for p in peers} == {"alive"}
    assert [p["peer_addr"] for p in peers] == [f"127.0.0.1:{base_port + 128 + k}" for k in range(2)]
    token = (cluster_dir / "admin.token").read_text().strip()
    assert (cluster_dir / "admin.token").stat().st_mode & 0o777 == 0o600
    ca = str(cluster_dir / "certs" / "ca.crt")
    with DfsClient(up.stdout.split()[0], timeout=30, tls_ca=ca, token=token) as c:
        assert c.whoami().role == "admin"
    with DfsClient(up.stdout.split()[1], timeout=30, tls_ca=ca, token="") as c, pytest.raises(Exception, match="token"):
        c.status()
    # S3 over HTTPS (the peer's certificate, no client certificate) with the admin key of DIR/s3-credentials
    endpoint = f"https://127.0.0.1:{base_port + 192}"
    assert f"aws --endpoint-url {endpoint} --ca-bundle {cluster_dir.resolve() / 'certs' / 'ca.crt'} s3 ls" in up.stderr
    session = boto3.Session(profile_name="default")
    s3 = session.client("s3", endpoint_url=endpoint, verify=ca, region_name="us-east-1")
    s3.create_bucket(Bucket="tls-bucket")
    s3.put_object(Bucket="tls-bucket", Key="k", Body=b"over https")
    assert s3.get_object(Bucket="tls-bucket", Key="k")["Body"].read() == b"over https"
