"""LocalCluster: N `dfs-peer serve` processes on 127.0.0.1 sharing one SQLite metadata file.

Every peer seeds from all the others, so any one of them can be stopped and started again and still
finds the cluster. Peers always authenticate each other: by mutual TLS with TLS on, else by a cluster
secret generated into DIR/cluster.secret and passed in the environment (never on a command line, where
`ps` would show it). The configured replication factor is never lowered: a layout that cannot meet
it is refused before anything starts. An admin S3 access key, sealed under that same secret, is kept
in DIR/s3-credentials (an AWS shared credentials file), with or without client authentication.
"""

from __future__ import annotations

import configparser
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peer.errors import ConfigError, EncryptionKeyMismatch
from peer.localcluster import procs
from peer.localcluster.dfscli import DfsCommand, DfsCommandFailed
from peer.localcluster.ports import MAX_PEERS, PortScheme
from peer.localcluster.state import ClusterState, peer_dir, serve_running
from peer.metadata.open import open_store
from peer.security.certs import init_certs
from peer.security.s3keys import SecretBox, new_s3_key
from peer.security.tokens import new_token

CONVERGE_TIMEOUT_S = 30.0
SUPERVISE_POLL_S = 0.5
S3_CREDENTIALS = "s3-credentials"

Report = Callable[[str], None]


@dataclass(frozen=True)
class PeerInfo:
    """One peer of the layout as `cluster status` shows it."""

    index: int
    pid: int | None
    running: bool
    node_id: str
    grpc_addr: str
    gossip_addr: str
    peer_addr: str
    state: str  # as the answering peer's membership sees it; "" when no peer answers
    s3_endpoint: str = ""  # the URL of the peer's S3 API

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class LocalCluster:
    def __init__(self, base: Path) -> None:
        self.base = base.resolve()
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        """The peers this command started (and may reap), by index."""

    # ------------------------------------------------------------------ paths and clients

    @property
    def certs(self) -> Path:
        return self.base / "certs"

    @property
    def metadata_uri(self) -> str:
        return f"sqlite:///{self.base / 'metadata.db'}"

    def client(self, addr: str, state: ClusterState, timeout: float | None = None) -> DfsCommand:
        """The `dfs` command aimed at the peer at `addr`, with this cluster's CA and admin token."""
        token = (self.base / "admin.token").read_text().strip() if state.auth else ""
        return DfsCommand(addr, tls_ca=str(self.certs / "ca.crt") if state.tls else "", token=token, timeout_s=timeout)

    def client_flags(self, state: ClusterState) -> str:
        """What `dfs` needs besides --peer to talk to this cluster."""
        flags = f" --tls-ca {self.certs / 'ca.crt'}" if state.tls else ""
        if state.auth:
            flags += f' --token "$(cat {self.base / "admin.token"})"'
        return flags

    # ------------------------------------------------------------------ up

    def up(self, count: int, replicas: int, base_port: int, *, tls: bool, auth: bool,
           tied: bool = False) -> tuple[ClusterState, list[dict[str, Any]], str]:
        """Starts every peer and returns once all agree on one ring: (state, ready documents, digest).

        On any failure, whatever was started is stopped again and ConfigError says which peer failed
        and why, in that peer's own words.
        """
        self.check_layout(count, replicas, base_port)
        self.base.mkdir(parents=True, exist_ok=True)
        self._refuse_if_running()
        if tls:
            init_certs(self.certs, count)
        if auth:
            self._admin_token()
        self._s3_credentials()
        state = ClusterState(count, base_port, replicas, tls, auth)
        state.save(self.base)
        started: dict[int, subprocess.Popen[bytes]] = {}
        try:
            for k in range(1, count + 1):
                started[k] = self._spawn(state, k, tied=tied)
                state.pids[k] = started[k].pid
            state.save(self.base)
            deadline = time.monotonic() + procs.READY_TIMEOUT_S
            ready = [procs.wait_ready(f"peer {k}", started[k], peer_dir(self.base, k), deadline) for k in started]
            digest = self.wait_converged(state, [r["grpc_addr"] for r in ready])
        except BaseException:
            self._stop_started(started)
            raise
        self.children = started
        return state, ready, digest

    @staticmethod
    def check_layout(count: int, replicas: int, base_port: int) -> None:
        """Refuses a layout that cannot work before anything starts."""
        if not 1 <= count <= MAX_PEERS:
            raise ConfigError(f"--peers must be between 1 and {MAX_PEERS}")
        if replicas > count:
            raise ConfigError(
                f"--replicas {replicas} needs at least {replicas} peers, got --peers {count}"
                f" (a smaller cluster needs a smaller --replicas; it is never lowered silently)"
            )
        PortScheme(base_port)

    def _refuse_if_running(self) -> None:
        if not ClusterState.exists(self.base):
            return
        state = ClusterState.load(self.base)
        running = [k for k, pid in sorted(state.pids.items()) if serve_running(pid, peer_dir(self.base, k))]
        if running:
            raise ConfigError(
                f"a cluster is already running in {self.base} (peers {', '.join(map(str, running))});"
                f" stop it with `dfs-peer cluster down --dir {self.base}`"
            )

    def _spawn(self, state: ClusterState, k: int, *, tied: bool) -> subprocess.Popen[bytes]:
        ports = PortScheme(state.base_port)
        data_dir = peer_dir(self.base, k)
        seeds = [ports.addr("gossip", i) for i in range(1, state.peers + 1) if i != k]
        args = [
            "--data-dir", str(data_dir),
            "--grpc-addr", ports.addr("grpc", k),
            "--gossip-addr", ports.addr("gossip", k),
            "--s3-addr", ports.addr("s3", k),
            "--metadata", self.metadata_uri,
            "--replicas", str(state.replicas),
            "--seeds", ",".join(seeds),
        ]
        if state.tls:
            args += ["--tls-cert", str(self.certs / f"peer-{k}.crt"), "--tls-key", str(self.certs / f"peer-{k}.key"),
                     "--tls-ca", str(self.certs / "ca.crt"), "--peer-grpc-addr", ports.addr("internal", k)]
        if not state.auth:
            args += ["--no-auth"]
        env = {**os.environ, "DFS_CLUSTER_SECRET": self._cluster_secret()}
        # Per-peer settings are never inherited; nor is an S3 key file, since the local peers seal S3
        # secrets under the cluster secret (as DIR/s3-credentials was made).
        for name in ("DFS_NODE_ID", "DFS_SEEDS", "DFS_DATA_DIR", "DFS_S3_KEY_FILE"):
            env.pop(name, None)
        return procs.spawn(args, data_dir, env, tied=tied)

    def _stop_started(self, started: dict[int, subprocess.Popen[bytes]]) -> None:
        for proc in started.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in started.values():
            try:
                proc.wait(timeout=procs.STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def wait_converged(self, state: ClusterState, addrs: list[str], timeout_s: float = CONVERGE_TIMEOUT_S) -> str:
        """The ring digest once every peer at `addrs` sees all of them alive and reports the same one."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while True:
            try:
                views = self._statuses(state, addrs)
                digests = {st["ring_digest"] for st in views}
                alive = [sum(1 for m in st["members"] if m["state"] == "alive") for st in views]
                if len(digests) == 1 and all(a >= len(addrs) for a in alive):
                    return digests.pop()
                last = f"{len(digests)} ring digests, alive members seen: {alive}"
            except DfsCommandFailed as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise ConfigError(f"peers did not agree on one ring within {timeout_s:.0f} s ({last})")
            time.sleep(0.1)

    def _statuses(self, state: ClusterState, addrs: list[str]) -> list[dict[str, Any]]:
        """`dfs status` of every peer at `addrs`, asked all at once: each is a process start, and one
        after the other they would make every round of the ring check as slow as all of them together."""
        with ThreadPoolExecutor(max_workers=max(1, len(addrs))) as pool:
            return list(pool.map(lambda addr: self.client(addr, state, timeout=2).status(), addrs))

    # ------------------------------------------------------------------ one peer

    def stop_peer(self, k: int) -> bool:
        """Stops peer K gracefully; False if it was not running."""
        state = ClusterState.load(self.base)
        self._check_index(state, k)
        pid = state.pids.get(k)
        data_dir = peer_dir(self.base, k)
        if not serve_running(pid, data_dir):
            return False
        assert pid is not None
        procs.stop(pid, data_dir)
        return True

    def start_peer(self, k: int) -> dict[str, Any]:
        """Starts peer K again on its own data directory and ports, and waits until the cluster agrees."""
        state = ClusterState.load(self.base)
        self._check_index(state, k)
        data_dir = peer_dir(self.base, k)
        if serve_running(state.pids.get(k), data_dir):
            raise ConfigError(f"peer {k} is already running (pid {state.pids[k]})")
        proc = self._spawn(state, k, tied=False)
        state.pids[k] = proc.pid
        state.save(self.base)
        ready = procs.wait_ready(f"peer {k}", proc, data_dir, time.monotonic() + procs.READY_TIMEOUT_S)
        running = [p for p in self.status() if p.running]
        self.wait_converged(state, [p.grpc_addr for p in running])
        return ready

    def _check_index(self, state: ClusterState, k: int) -> None:
        if not 1 <= k <= state.peers:
            raise ConfigError(f"--peer {k} is out of range: the cluster in {self.base} has peers 1-{state.peers}")

    # ------------------------------------------------------------------ down and status

    def down(self, timeout_s: float = procs.STOP_TIMEOUT_S) -> list[int]:
        """Stops every running peer (all at once, each announcing it leaves); returns their indexes."""
        state = ClusterState.load(self.base)
        running = {k: pid for k, pid in state.pids.items() if serve_running(pid, peer_dir(self.base, k))}
        for pid in running.values():
            procs.signal_pid(pid, signal.SIGTERM)
        for k, pid in running.items():
            procs.stop(pid, peer_dir(self.base, k), timeout_s, reap=self._reap)
        return sorted(running)

    def _reap(self) -> None:
        for proc in self.children.values():
            proc.poll()

    def status(self) -> list[PeerInfo]:
        state = ClusterState.load(self.base)
        ports = PortScheme(state.base_port)
        rows = []
        for k in range(1, state.peers + 1):
            data_dir = peer_dir(self.base, k)
            pid = state.pids.get(k)
            rows.append(PeerInfo(
                index=k, pid=pid, running=serve_running(pid, data_dir), node_id=_node_id(data_dir),
                grpc_addr=ports.addr("grpc", k), gossip_addr=ports.addr("gossip", k),
                peer_addr=ports.addr("internal", k) if state.tls else ports.addr("grpc", k), state="",
                s3_endpoint=s3_endpoint(ports.addr("s3", k), state.tls),
            ))
        views = self._membership(state, [r.grpc_addr for r in rows if r.running])
        return [PeerInfo(**{**r.__dict__, "state": views.get(r.node_id, "unknown" if views else "")}) for r in rows]

    def _membership(self, state: ClusterState, addrs: list[str]) -> dict[str, str]:
        """node id -> state, as the first running peer that answers sees the cluster."""
        for addr in addrs:
            try:
                members = self.client(addr, state, timeout=3).status()["members"]
            except DfsCommandFailed:
                continue
            return {str(m["node_id"]): str(m["state"]) for m in members}
        return {}

    # ------------------------------------------------------------------ foreground

    def supervise(self, report: Report) -> None:
        """Watches the peers this command started until Ctrl-C: a peer that dies is reported (which one,
        and its last log line) and the others keep serving."""
        reported: set[int] = set()
        while True:
            for k, proc in self.children.items():
                if k not in reported and proc.poll() is not None:
                    reported.add(k)
                    reason = procs.failure_reason(peer_dir(self.base, k), proc.returncode)
                    report(f"peer {k} (pid {proc.pid}) stopped: {reason}; "
                           f"the other peers keep serving (`dfs-peer cluster start --dir {self.base} --peer {k}`)")
            time.sleep(SUPERVISE_POLL_S)

    # ------------------------------------------------------------------ secrets

    def _cluster_secret(self) -> str:
        """The secret the local peers sign gossip with; made once per cluster directory (mode 0600)."""
        path = self.base / "cluster.secret"
        if path.exists():
            return path.read_text().strip()
        secret = secrets.token_urlsafe(32)
        write_private(path, secret)
        return secret

    def _admin_token(self) -> str:
        """An admin token for this cluster, made once and kept in DIR/admin.token (mode 0600)."""
        path = self.base / "admin.token"
        if path.exists():
            return path.read_text().strip()
        store = open_store(self.metadata_uri)
        try:
            token, record = new_token("admin", "cluster up", time.time())
            store.add_token(record)
        finally:
            store.close()
        write_private(path, token)
        return token

    @property
    def s3_credentials(self) -> Path:
        return self.base / S3_CREDENTIALS

    def _s3_credentials(self) -> str:
        """An admin S3 access key for this cluster in DIR/s3-credentials (mode 0600), made on the
        metadata store directly and kept across restarts while it is still valid; returns its id."""
        box = SecretBox.from_cluster_secret(self._cluster_secret())
        store = open_store(self.metadata_uri)
        try:
            kept = _read_credentials(self.s3_credentials)
            if kept is not None and _still_valid(store, box, *kept):
                return kept[0]
            made = new_s3_key(box, "admin", "cluster up", time.time())
            store.add_s3_key(made.record)
        finally:
            store.close()
        write_private(self.s3_credentials, f"[default]\naws_access_key_id = {made.access_key_id}\n"
                                           f"aws_secret_access_key = {made.secret}")
        return made.access_key_id


def _read_credentials(path: Path) -> tuple[str, str] | None:
    """(access key id, secret) of the [default] profile of an AWS credentials file, if it has one."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text())
        return parser["default"]["aws_access_key_id"].strip(), parser["default"]["aws_secret_access_key"].strip()
    except (OSError, configparser.Error, KeyError):
        return None


def _still_valid(store: Any, box: SecretBox, access_key_id: str, secret: str) -> bool:
    """Whether the key exists, is not revoked, and opens under this cluster's secret to `secret`."""
    record = store.get_s3_key(access_key_id)
    if record is None or record.revoked_at is not None:
        return False
    try:
        return box.open(record) == secret
    except EncryptionKeyMismatch:
        return False


def s3_endpoint(s3_addr: str, tls: bool) -> str:
    """The URL S3 clients take as their endpoint for a peer's S3 address ("" when it serves none)."""
    return f"{'https' if tls else 'http'}://{s3_addr}" if s3_addr else ""


def _node_id(data_dir: Path) -> str:
    try:
        return str(json.loads((data_dir / "node.json").read_text())["node_id"])
    except (OSError, ValueError, KeyError):
        return ""


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
