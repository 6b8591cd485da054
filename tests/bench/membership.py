"""Section 6, membership with the default gossip settings (interval 0.5 s, suspect 3 s, dead 6 s).

N peer processes start one after another (each seeded with the first two, as tests/cluster.py does).
Agreement time runs from the moment the last peer process is started (also reported from the moment
it became ready) until every peer reports N alive members and one ring digest, polling ClusterStatus
through the SDK. Then one non-seed peer is SIGKILLed, and the time until every survivor reports it
dead is measured, with each survivor's own detection time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from client.errors import DfsClientError
from client.sdk import DfsClient
from tests.bench.common import BenchCluster, percentile, progress

POLL_S = 0.05


def _poll(clients: list[DfsClient]) -> list[Any]:
    out: list[Any] = []
    for c in clients:
        try:
            out.append(c.status())
        except DfsClientError:
            out.append(None)
    return out


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    n = 5 if quick else 20
    agree_limit, dead_limit = 60.0, 60.0
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = BenchCluster(workdir, replicas=2)
    clients: list[DfsClient] = []
    try:
        progress(f"membership: starting {n} peers one after another (default gossip settings)")
        t0 = time.monotonic()
        for i in range(n):
            cluster.add_peer()
            if (i + 1) % 5 == 0:
                progress(f"membership: {i + 1}/{n} peers started")
        startup_s = time.monotonic() - t0
        last = cluster.peers[-1]
        clients = [DfsClient(p.grpc_addr, timeout=2) for p in cluster.peers]
        ids = {p.node_id for p in cluster.peers}

        agreed_at = None
        polls = 0
        last_seen: dict[str, Any] = {}
        while time.monotonic() - last.started_at < agree_limit:
            polls += 1
            statuses = _poll(clients)
            digests = {s.ring_digest for s in statuses if s is not None}
            alive_ok = all(
                s is not None and {m.node_id for m in s.members if m.state == "alive"} == ids for s in statuses
            )
            last_seen = {"digests": len(digests), "all_alive": alive_ok}
            if alive_ok and len(digests) == 1:
                agreed_at = time.monotonic()
                break
            time.sleep(POLL_S)
        if agreed_at is None:
            raise RuntimeError(f"{n} peers did not agree within {agree_limit} s: {last_seen}")
        agree_from_start = agreed_at - last.started_at
        agree_from_ready = agreed_at - last.ready_at
        progress(f"membership: {n} peers agree on one digest {agree_from_start:.2f} s after the last peer "
                 f"started ({agree_from_ready:.2f} s after it was ready)")

        victim = cluster.peers[-1] if n > 3 else cluster.peers[1]
        survivors = [(p, c) for p, c in zip(cluster.peers, clients, strict=True) if p is not victim]
        progress(f"membership: SIGKILL peer{victim.index} and wait until all {len(survivors)} survivors mark it dead")
        t_kill = time.monotonic()
        victim.kill()
        seen_dead: dict[str, float] = {}
        seen_suspect: dict[str, float] = {}
        while len(seen_dead) < len(survivors) and time.monotonic() - t_kill < dead_limit:
            for peer, client in survivors:
                if peer.node_id in seen_dead:
                    continue
                try:
                    status = client.status()
                except DfsClientError:
                    continue
                state = next((m.state for m in status.members if m.node_id == victim.node_id), "")
                now = time.monotonic() - t_kill
                if state in ("suspect", "dead") and peer.node_id not in seen_suspect:
                    seen_suspect[peer.node_id] = now
                if state == "dead":
                    seen_dead[peer.node_id] = now
            time.sleep(POLL_S)
        all_dead = len(seen_dead) == len(survivors)
        dead_s = max(seen_dead.values()) if all_dead else None
        outcome = f"{dead_s:.2f} s" if dead_s is not None else f"NOT within {dead_limit:.0f} s"
        progress(f"membership: killed peer dead on all survivors after {outcome}")
        times = sorted(seen_dead.values())
        return {
            "peers": n,
            "settings": {"gossip_interval_s": 0.5, "suspect_timeout_s": 3.0, "dead_timeout_s": 6.0, "replicas": 2},
            "sequential_startup_s": round(startup_s, 2),
            "agree_s_from_last_start": round(agree_from_start, 3),
            "agree_s_from_last_ready": round(agree_from_ready, 3),
            "agreement_polls": polls,
            "poll_interval_s": POLL_S,
            "killed_peer": victim.index,
            "dead_by_all_s": round(dead_s, 3) if dead_s is not None else None,
            "dead_detect_s_first": round(times[0], 3) if times else None,
            "dead_detect_s_median": round(percentile(times, 50), 3) if times else None,
            "suspect_by_all_s": round(max(seen_suspect.values()), 3) if seen_suspect else None,
            "survivors_reporting_dead": len(seen_dead),
            "survivors": len(survivors),
        }
    finally:
        for c in clients:
            c.close()
        cluster.close()
