"""A busy machine: every core saturated by other processes for a minute, while clients keep working.

The test starts one bounded busy loop per core (each exits by itself after BUSY_S seconds, and is
killed in `finally` whatever happens) next to 4 peers on the fast gossip profile of tests/cluster.py
(suspect after 1 s of silence, dead after 2 s), and a client that uploads and downloads through every
peer in turn. A peer whose event loop runs late because the CPU is taken must not read its own
lateness as the silence of others (Lifeguard's local health awareness, peer/membership/awareness.py),
and the others must not lose its heartbeats for seconds. What is checked:

- no peer declares another dead, neither in any status a peer reports (polled every 0.5 s) nor in
  any peer's log (every membership transition is logged, so a dead/alive flap shorter than a poll
  is still seen);
- every client call succeeds; the figures show how much slower they got.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from client import DfsClientError
from tests.cluster import Cluster, PeerProc

BUSY_S = 60.0
PEERS = 4
BASELINE_OPS = 12
SPINNER = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end:\n    pass\n"
TRANSITION = re.compile(r"member (\w+) (suspect|dead|alive)\b")


def spin(seconds: float) -> list[subprocess.Popen[bytes]]:
    """One busy loop per core, each ending by itself after `seconds` (a bound even if nobody kills it)."""
    cores = max(2, os.cpu_count() or 2)
    return [subprocess.Popen([sys.executable, "-c", SPINNER.format(s=seconds)]) for _ in range(cores)]


def transitions(peer: PeerProc, since: str) -> Counter[str]:
    """Membership transitions in the peer's log at or after wall-clock prefix `since` (log timestamps)."""
    seen: Counter[str] = Counter()
    for line in peer.log_path.read_text(errors="replace").splitlines():
        if line[:23] < since:
            continue
        m = TRANSITION.search(line)
        if m:
            seen[m.group(2)] += 1
    return seen


def log_clock() -> str:
    """The current time as the peers' log lines start (YYYY-mm-dd HH:MM:SS,mmm)."""
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"


class Load:
    """Uploads and downloads through each peer in turn until stopped; every latency and error kept."""

    def __init__(self, peers: list[PeerProc]) -> None:
        self.peers = peers
        self.latencies: dict[str, list[float]] = {"upload": [], "download": []}
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.done = 0

    def one(self, i: int) -> None:
        peer = self.peers[i % len(self.peers)]
        data = os.urandom(64 * 1024 + i)
        name = f"busy/{i % 16}.bin"
        try:
            with peer.client(timeout=60) as c:
                t = time.monotonic()
                up = c.upload(data, name=name)
                self.latencies["upload"].append(time.monotonic() - t)
            with self.peers[(i + 1) % len(self.peers)].client(timeout=60) as c:
                t = time.monotonic()
                got = c.read(name, version=up.version.version)
                self.latencies["download"].append(time.monotonic() - t)
            if got != data:
                self.errors.append(f"call {i}: downloaded other bytes than uploaded")
        except DfsClientError as exc:
            self.errors.append(f"call {i} via peer{peer.index}: {type(exc).__name__} {exc.code}: {exc}")
        self.done += 1

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            self.one(i)
            i += 1
            self.stop.wait(0.05)


def watch_members(peers: list[PeerProc], stop: threading.Event, seen: list[str], polls: Counter[str]) -> None:
    """Every 0.5 s, each peer's view of the others: a member reported dead (or left) is recorded."""
    ids = {p.node_id: p.index for p in peers}
    while not stop.wait(0.5):
        for p in peers:
            try:
                with p.client(timeout=10) as c:
                    members = c.status().members
            except DfsClientError as exc:
                polls["failed"] += 1
                seen.append(f"peer{p.index} did not answer ClusterStatus: {exc}")
                continue
            polls["ok"] += 1
            for m in members:
                polls[m.state] += 1
                if m.node_id in ids and m.state in ("dead", "left"):
                    seen.append(f"peer{p.index} reports peer{ids[m.node_id]} {m.state} "
                                f"(silent for {m.last_seen_s:.1f} s)")


@pytest.mark.long  # `make test-long`
@pytest.mark.timeout(BUSY_S + 120)
def test_saturated_cores_declare_no_alive_peer_dead(make_cluster, request: pytest.FixtureRequest) -> None:
    cluster: Cluster = make_cluster(PEERS)
    peers = list(cluster.peers)
    baseline = Load(peers)
    for i in range(BASELINE_OPS):
        baseline.one(i)
    assert not baseline.errors, baseline.errors

    since = log_clock()
    load = Load(peers)
    stop = threading.Event()
    reports: list[str] = []
    polls: Counter[str] = Counter()
    threads = [threading.Thread(target=load.run, daemon=True),
               threading.Thread(target=watch_members, args=(peers, stop, reports, polls), daemon=True)]
    spinners = spin(BUSY_S)
    started = time.monotonic()
    try:
        for t in threads:
            t.start()
        for s in spinners:
            s.wait(BUSY_S + 30)
    finally:
        for s in spinners:
            if s.poll() is None:
                s.kill()
                s.wait()
        busy_for = time.monotonic() - started
        load.stop.set()
        stop.set()
        for t in threads:
            t.join(90)

    logged = {p.index: transitions(p, since) for p in peers}
    figures = summary(baseline, load, busy_for, len(spinners), polls, logged)
    print(figures)
    request.node.add_report_section("call", "busy machine", figures)

    assert busy_for >= BUSY_S - 1, f"the busy loops ended early, after {busy_for:.1f} s"
    assert all(p.running for p in peers), "a peer exited under load"
    assert not reports, "\n".join(reports[:20])
    dead = {i: c["dead"] for i, c in logged.items() if c["dead"]}
    assert not dead, f"peers logged other peers dead: {dead}\n{cluster.tail_logs()}"
    assert not load.errors, "\n".join(load.errors[:20])
    assert load.done >= 10, f"only {load.done} client round trips in {busy_for:.0f} s"
    assert polls["ok"] >= PEERS * 20, polls


def summary(baseline: Load, load: Load, busy_for: float, spinners: int, polls: Counter[str],
            logged: dict[int, Counter[str]]) -> str:
    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs) * 1000:.0f} ms" if xs else "-"

    def worst(xs: list[float]) -> str:
        return f"{max(xs) * 1000:.0f} ms" if xs else "-"

    suspects = sum(c["suspect"] for c in logged.values())
    return "\n".join([
        f"busy machine: {spinners} busy loops for {busy_for:.1f} s on {os.cpu_count()} cores, {PEERS} peers",
        f"  client round trips : {load.done} under load, {len(load.errors)} failed",
        f"  upload latency     : median {med(baseline.latencies['upload'])} idle, {med(load.latencies['upload'])} "
        f"busy (worst {worst(load.latencies['upload'])})",
        f"  download latency   : median {med(baseline.latencies['download'])} idle, "
        f"{med(load.latencies['download'])} busy (worst {worst(load.latencies['download'])})",
        f"  member states seen : {dict(polls)} in status polls",
        f"  logged transitions : {sum(c['dead'] for c in logged.values())} dead, {suspects} suspect",
    ])


def test_spinners_are_bounded(tmp_path: Path) -> None:
    """The busy loops end by themselves: a test that dies before its `finally` leaves no spinner behind."""
    spinners = spin(0.2)
    for s in spinners:
        assert s.wait(30) == 0
