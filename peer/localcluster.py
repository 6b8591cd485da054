"""`dfs-peer cluster up`: N peers as child processes on 127.0.0.1 sharing one SQLite metadata file.

The development and demo entry point (`make run`). Peers are ordinary `dfs-peer serve` processes;
the first is every other's seed. Ctrl-C (or SIGTERM) stops them all, each announcing that it leaves.
Peers always authenticate each other: by mutual TLS with --tls, else by a generated cluster secret
(passed in the environment, not on the command line, where `ps` would show it).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from client.sdk import DfsClient
from peer.errors import DfsError
from peer.metadata.open import open_store
from peer.security.certs import init_certs
from peer.security.tokens import new_token

READY_TIMEOUT_S = 30.0


class LocalCluster:
    """COUNT `dfs-peer serve` children on 127.0.0.1 and how to reach them (TLS CA, admin token)."""

    def __init__(self, base: Path, count: int, grpc_port: int, gossip_port: int, replicas: int, *,
                 tls: bool = False, auth: bool = False) -> None:
        self.base = base
        self.count = count
        self.grpc_port = grpc_port
        self.gossip_port = gossip_port
        self.replicas = replicas
        self.tls = tls
        self.auth = auth
        self.certs = base / "certs"
        self.token: str | None = None

    @property
    def tls_ca(self) -> str | None:
        return str(self.certs / "ca.crt") if self.tls else None

    def run(self, demo: bool) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "DFS_CLUSTER_SECRET": _cluster_secret(self.base)}
        if self.tls:
            init_certs(self.certs, self.count)
        if self.auth:
            self.token = self._admin_token()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i in range(self.count):
                procs.append(self._spawn(i, env))
            ready = _wait_ready(self.base, procs)
            addrs = [r["grpc_addr"] for r in ready]
            digest = self._wait_converged(addrs)
            click.echo(f"{self.count} peers up (replicas={self.replicas}, TLS {'on' if self.tls else 'off'}, "
                       f"auth {'on' if self.auth else 'off'}), ring digest {digest}; "
                       f"logs in {self.base}/peer*/peer.log")
            for i, r in enumerate(ready):
                click.echo(f"  peer{i}  node {r['node_id'][:8]}  gRPC {r['grpc_addr']}  gossip {r['gossip_addr']}")
            if demo:
                self._demo(addrs)
            click.echo(f"try: dfs --peer {addrs[0]}{self._client_flags()} status    (Ctrl-C stops the cluster)")
            _wait_for_signal(procs)
        finally:
            _stop_all(procs)

    def _client_flags(self) -> str:
        flags = f" --tls-ca {self.tls_ca}" if self.tls else ""
        if self.auth:
            flags += f' --token "$(cat {self.base / "admin.token"})"'
        return flags

    def _admin_token(self) -> str:
        """An admin token for this cluster, made once and kept in DIR/admin.token (mode 0600)."""
        path = self.base / "admin.token"
        if path.exists():
            return path.read_text().strip()
        store = open_store(f"sqlite:///{(self.base / 'metadata.db').resolve()}")
        try:
            token, record = new_token("admin", "cluster up", time.time())
            store.add_token(record)
        finally:
            store.close()
        _write_private(path, token)
        return token

    def _spawn(self, index: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
        data_dir = self.base / f"peer{index}"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "ready.json").unlink(missing_ok=True)
        args = [
            sys.executable, "-m", "peer", "serve",
            "--data-dir", str(data_dir),
            "--grpc-addr", f"127.0.0.1:{self.grpc_port + index}",
            "--gossip-addr", f"127.0.0.1:{self.gossip_port + index}",
            "--metadata", f"sqlite:///{(self.base / 'metadata.db').resolve()}",
            "--replicas", str(self.replicas),
        ]
        if index > 0:
            args += ["--seeds", f"127.0.0.1:{self.gossip_port}"]
        if self.tls:
            n = index + 1
            args += ["--tls-cert", str(self.certs / f"peer-{n}.crt"), "--tls-key", str(self.certs / f"peer-{n}.key"),
                     "--tls-ca", str(self.certs / "ca.crt"),
                     "--peer-grpc-addr", f"127.0.0.1:{self.grpc_port + 100 + index}"]
        if not self.auth:
            args += ["--no-auth"]
        log = open(data_dir / "peer.log", "ab")  # noqa: SIM115 - handed to the child for its lifetime
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def _client(self, addr: str, timeout: float | None = None) -> DfsClient:
        return DfsClient(addr, timeout=timeout, tls_ca=self.tls_ca, token=self.token)

    def _wait_converged(self, addrs: list[str]) -> str:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            digests = set()
            alive = []
            for addr in addrs:
                with self._client(addr, timeout=2) as c:
                    st = c.status()
                digests.add(st.ring_digest)
                alive.append(sum(1 for m in st.members if m.state == "alive"))
            if len(digests) == 1 and all(a == len(addrs) for a in alive):
                return digests.pop()
            if time.monotonic() > deadline:
                raise DfsError(f"peers did not agree on one ring within {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.1)

    def _demo(self, addrs: list[str]) -> None:
        sample = self.base / "demo-sample.bin"
        sample.write_bytes(os.urandom(5 * 1024 * 1024 + 12345))
        with self._client(addrs[0]) as c:
            up = c.upload(sample, name="demo/sample.bin", content_type="application/octet-stream")
            click.echo(f"demo: uploaded demo/sample.bin through {addrs[0]}: v{up.version.version}, "
                       f"{up.version.size} bytes in {up.version.chunk_count} chunks on peers "
                       f"{', '.join(p[:8] for p in up.peers)}")
        out = self.base / "demo-download.bin"
        with self._client(addrs[-1]) as c, open(out, "wb") as f:
            info = c.download("demo/sample.bin", f)
        same = out.read_bytes() == sample.read_bytes()
        click.echo(f"demo: downloaded it back through {addrs[-1]}: sha256 {info.sha256[:16]}..., "
                   f"{'byte-identical' if same else 'MISMATCH'}")
        if not same:
            raise DfsError("demo download differs from the upload")


def _cluster_secret(base: Path) -> str:
    """The secret the local peers sign gossip with; made once per cluster directory (mode 0600)."""
    path = base / "cluster.secret"
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(32)
    _write_private(path, secret)
    return secret


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def _wait_ready(base: Path, procs: list[subprocess.Popen[bytes]]) -> list[dict[str, str]]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    ready: list[dict[str, str]] = []
    for i, proc in enumerate(procs):
        path = base / f"peer{i}" / "ready.json"
        while not path.exists():
            if proc.poll() is not None:
                raise DfsError(f"peer{i} exited with code {proc.returncode}; see {base / f'peer{i}' / 'peer.log'}")
            if time.monotonic() > deadline:
                raise DfsError(f"peer{i} not ready after {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        ready.append(json.loads(path.read_text()))
    return ready


def _wait_for_signal(procs: list[subprocess.Popen[bytes]]) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        raise DfsError("a peer exited unexpectedly; see its peer.log")
    except KeyboardInterrupt:
        click.echo("stopping peers...")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
