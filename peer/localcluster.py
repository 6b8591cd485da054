"""`dfs-peer cluster up`: N peers as child processes on 127.0.0.1 sharing one SQLite metadata file.

The development and demo entry point (`make run`). Peers are ordinary `dfs-peer serve` processes;
the first is every other's seed. Ctrl-C (or SIGTERM) stops them all, each announcing that it leaves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from peer.errors import DfsError

READY_TIMEOUT_S = 30.0


def _spawn(base: Path, index: int, grpc_port: int, gossip_port: int, replicas: int) -> subprocess.Popen[bytes]:
    data_dir = base / f"peer{index}"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "ready.json").unlink(missing_ok=True)
    args = [
        sys.executable, "-m", "peer", "serve",
        "--data-dir", str(data_dir),
        "--grpc-addr", f"127.0.0.1:{grpc_port + index}",
        "--gossip-addr", f"127.0.0.1:{gossip_port + index}",
        "--metadata", f"sqlite:///{(base / 'metadata.db').resolve()}",
        "--replicas", str(replicas),
    ]
    if index > 0:
        args += ["--seeds", f"127.0.0.1:{gossip_port}"]
    log = open(data_dir / "peer.log", "ab")  # noqa: SIM115 - handed to the child for its lifetime
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


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


def _wait_converged(addrs: list[str]) -> str:
    from client.sdk import DfsClient

    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        digests = set()
        alive = []
        for addr in addrs:
            with DfsClient(addr, timeout=2) as c:
                st = c.status()
            digests.add(st.ring_digest)
            alive.append(sum(1 for m in st.members if m.state == "alive"))
        if len(digests) == 1 and all(a == len(addrs) for a in alive):
            return digests.pop()
        if time.monotonic() > deadline:
            raise DfsError(f"peers did not agree on one ring within {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.1)


def _demo(base: Path, addrs: list[str]) -> None:
    from client.sdk import DfsClient

    sample = base / "demo-sample.bin"
    sample.write_bytes(os.urandom(5 * 1024 * 1024 + 12345))
    with DfsClient(addrs[0]) as c:
        up = c.upload(sample, name="demo/sample.bin", content_type="application/octet-stream")
        click.echo(f"demo: uploaded demo/sample.bin through {addrs[0]}: v{up.version.version}, "
                   f"{up.version.size} bytes in {up.version.chunk_count} chunks on peers "
                   f"{', '.join(p[:8] for p in up.peers)}")
    out = base / "demo-download.bin"
    with DfsClient(addrs[-1]) as c, open(out, "wb") as f:
        info = c.download("demo/sample.bin", f)
    same = out.read_bytes() == sample.read_bytes()
    click.echo(f"demo: downloaded it back through {addrs[-1]}: sha256 {info.sha256[:16]}..., "
               f"{'byte-identical' if same else 'MISMATCH'}")
    if not same:
        raise DfsError("demo download differs from the upload")


def run_local_cluster(base: Path, count: int, grpc_port: int, gossip_port: int, replicas: int, demo: bool) -> None:
    base.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(count):
            procs.append(_spawn(base, i, grpc_port, gossip_port, replicas))
        ready = _wait_ready(base, procs)
        addrs = [r["grpc_addr"] for r in ready]
        digest = _wait_converged(addrs)
        click.echo(f"{count} peers up (replicas={replicas}), ring digest {digest}; logs in {base}/peer*/peer.log")
        for i, r in enumerate(ready):
            click.echo(f"  peer{i}  node {r['node_id'][:8]}  gRPC {r['grpc_addr']}  gossip {r['gossip_addr']}")
        if demo:
            _demo(base, addrs)
        click.echo(f"try: dfs --peer {addrs[0]} status    (Ctrl-C stops the cluster)")
        _wait_for_signal(procs)
    finally:
        _stop_all(procs)


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
