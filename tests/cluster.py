"""A cluster of real `dfs-peer serve` processes on 127.0.0.1 for integration tests.

Peers bind port 0 and report their real addresses in DATA_DIR/ready.json, so tests never guess
ports. Each peer logs to its own file; `tail_logs()` shows them when a test fails. Teardown
SIGKILLs whatever is still running, so no process outlives the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

import pytest

from client.sdk import DfsClient
from tests.waiting import wait_until_sync

FAST = [
    "--gossip-interval", "0.1",
    "--suspect-timeout", "1.0",
    "--dead-timeout", "2.0",
    "--dead-grace", "4.0",
    "--rpc-timeout", "5.0",
    "--log-level", "INFO",
]


def wait_for(pred: Callable[[], bool], timeout: float, what: str, describe: Callable[[], str] | None = None) -> None:
    """wait_until_sync where a failing probe (a peer not answering yet) counts as "not yet"."""
    last_error = [""]

    def probe() -> bool:
        try:
            return pred()
        except Exception as exc:  # noqa: BLE001 - an observation, not a failure
            last_error[0] = str(exc)
            return False

    wait_until_sync(probe, timeout, describe=lambda: f"{what}; {describe() if describe else ''} {last_error[0]}")


class HasClient(Protocol):
    node_id: str

    def client(self, timeout: float = 30) -> DfsClient: ...


def wait_ring_agreement(peers: Sequence[HasClient], timeout: float) -> str:
    """Waits until each of `peers` sees all of them alive and all report one ring digest; returns it."""
    ids = {p.node_id for p in peers}
    digests: set[str] = set()

    def agreed() -> bool:
        digests.clear()
        for p in peers:
            with p.client(timeout=3) as c:
                st = c.status()
            if not ids <= {m.node_id for m in st.members if m.state == "alive"}:
                return False
            digests.add(st.ring_digest)
        return len(digests) == 1

    wait_for(agreed, timeout, "ring convergence", lambda: f"digests={digests}")
    return next(iter(digests))


#: Process peers sign their gossip and chunk calls with this secret (the path production clusters
#: without TLS take); clients need no token unless a test turns auth on (DFS_NO_AUTH=""). Each serves
#: S3 on a port of its own (the default 9000 would be one port for every peer).
TEST_SECRET = "test-cluster-secret-0123456789"
PEER_ENV = {"DFS_CLUSTER_SECRET": TEST_SECRET, "DFS_NO_AUTH": "1", "DFS_S3_ADDR": "127.0.0.1:0"}


class PeerProc:
    profile: tuple[str, ...] = tuple(FAST)  # timing flags; the benchmark's peers use the defaults

    def __init__(self, base: Path, index: int, metadata: str, replicas: int, extra: Sequence[str],
                 client_kwargs: dict[str, Any] | None = None) -> None:
        self.index = index
        self.client_kwargs = client_kwargs or {}
        self.data_dir = base / f"peer{index}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.metadata = metadata
        self.replicas = replicas
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.node_id = ""
        self.grpc_addr = ""
        self.gossip_addr = ""
        self.peer_addr = ""
        self.s3_addr = ""
        self.log_path = self.data_dir / "peer.log"

    def start(self, seeds: Sequence[str] = (), env: dict[str, str] | None = None) -> PeerProc:
        ready = self.data_dir / "ready.json"
        ready.unlink(missing_ok=True)
        args = [
            sys.executable, "-m", "peer", "serve",
            "--data-dir", str(self.data_dir),
            "--grpc-addr", "127.0.0.1:0",
            "--gossip-addr", "127.0.0.1:0",
            "--metadata", self.metadata,
            "--replicas", str(self.replicas),
            *self.profile,
            *self.extra,
        ]
        if seeds:
            args += ["--seeds", ",".join(seeds)]
        with open(self.log_path, "ab") as log:
            self.proc = self.spawn(args, log, {**os.environ, **PEER_ENV, **(env or {})})
        wait_for(lambda: ready.exists() or self.proc.poll() is not None, 30, f"peer{self.index} ready.json")  # type: ignore[union-attr]
        if not ready.exists():
            raise AssertionError(f"peer{self.index} exited with {self.proc.returncode}:\n{self.tail()}")
        doc = json.loads(ready.read_text())
        self.node_id, self.grpc_addr, self.gossip_addr = doc["node_id"], doc["grpc_addr"], doc["gossip_addr"]
        self.peer_addr = doc.get("peer_addr", self.grpc_addr)
        self.s3_addr = doc.get("s3_addr", "")
        return self

    def spawn(self, args: list[str], log: IO[bytes], env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, timeout: float = 30) -> DfsClient:
        return DfsClient(self.grpc_addr, timeout=timeout, **self.client_kwargs)

    def kill(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 15) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def chunk_path(self, chunk_id: str) -> Path:
        return self.data_dir / "chunks" / chunk_id[:2] / chunk_id[2:4] / chunk_id


class Cluster:
    def __init__(self, base: Path, metadata: str | None = None, replicas: int = 2,
                 extra: Sequence[str] = (), *, per_peer: Callable[[int], Sequence[str]] | None = None,
                 client_kwargs: dict[str, Any] | None = None) -> None:
        """`per_peer(index)` adds flags for one peer (its own certificate); `client_kwargs` go to
        every DfsClient the helpers open (tls_ca, token)."""
        self.base = base
        self.metadata = metadata or f"sqlite:///{base / 'metadata.db'}"
        self.replicas = replicas
        self.extra = list(extra)
        self.per_peer = per_peer
        self.client_kwargs = client_kwargs or {}
        self.peers: list[PeerProc] = []

    def add_peer(self, env: dict[str, str] | None = None) -> PeerProc:
        index = len(self.peers)
        extra = [*self.extra, *(self.per_peer(index) if self.per_peer else ())]
        peer = PeerProc(self.base, index, self.metadata, self.replicas, extra, self.client_kwargs)
        seeds = [p.gossip_addr for p in self.live()][:2]
        self.peers.append(peer.start(seeds, env))
        return peer

    def start(self, n: int) -> Cluster:
        for _ in range(n):
            self.add_peer()
        self.wait_converged()
        return self

    def restart(self, peer: PeerProc) -> PeerProc:
        seeds = [p.gossip_addr for p in self.live() if p is not peer][:2]
        return peer.start(seeds)

    def live(self) -> list[PeerProc]:
        return [p for p in self.peers if p.running]

    def by_id(self, node_id: str) -> PeerProc:
        return next(p for p in self.peers if p.node_id == node_id)

    def wait_converged(self, timeout: float = 20) -> str:
        """Every live peer sees every live peer alive and all report one ring digest."""
        return wait_ring_agreement(self.live(), timeout)

    def close(self) -> None:
        for p in self.peers:
            if p.proc is not None and p.proc.poll() is None:
                p.resume()
                p.kill()

    def tail_logs(self) -> str:
        return "\n".join(f"----- peer{p.index} {p.node_id[:8]} -----\n{p.tail()}" for p in self.peers)


@contextmanager
def shared_cluster(
    factory: pytest.TempPathFactory, request: pytest.FixtureRequest, name: str, peers: int, replicas: int,
    extra: Sequence[str] = (),
) -> Iterator[Cluster]:
    """A converged cluster for a fixture (`extra`: more `serve` flags for every peer); its peers' logs
    are printed if a test failed while it ran."""
    failed_before = request.session.testsfailed
    cluster = Cluster(factory.mktemp(name), replicas=replicas, extra=extra)
    try:
        cluster.start(peers)
        yield cluster
    finally:
        cluster.close()
        if request.session.testsfailed > failed_before:
            print(cluster.tail_logs())
