"""Section 8, what metrics and the access log cost: the rows they could slow down, with both on and
with both off, in one run.

Two 3-peer R=2 clusters run side by side for the whole section: one at the defaults (request metrics
and access log on) and one started with `--no-metrics --no-access-log`. The rows are those of the
main gRPC sections, measured by the same functions: 20 clients x 64 KiB upload then download
(`concurrency.run_one`) and one 256 MiB upload then download through peer0
(`throughput.transfer_round`). Rounds alternate the clusters in ABBA order (on, off, off, on, ...), so
a drift in the machine's load, page cache or disk falls on both alike; each figure is the best of
its rounds, and the cost is how much slower "on" is than "off", in %. While one cluster is measured
the other idles (gossip every 0.5 s). Peer CPU per operation is recorded beside each figure: it
shows the cost even when the machine, not the peers, limits the throughput.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from client.sdk import DfsClient
from tests.bench.clients import ClientPool
from tests.bench.common import KIB, MIB, BenchCluster, UniqueData, drain_download, progress, start_cluster
from tests.bench.concurrency import PhaseClock, run_one
from tests.bench.throughput import transfer_round

MODES = {"on": (), "off": ("--no-metrics", "--no-access-log")}
"""Each cluster's extra `serve` flags: the defaults, and both switched off."""


def _order(rounds: int) -> list[str]:
    """ABBA: on, off, off, on, on, off, ..."""
    return [mode for n in range(rounds) for mode in (("on", "off") if n % 2 == 0 else ("off", "on"))]


def _cpu_ms_per_op(summary: dict[str, Any]) -> float:
    ops = summary["ops"]
    return round(10 * sum(summary["peer_cpu_pct"]) * summary["wall_s"] / ops, 3) if ops else 0.0


def _cpu_ms_per_mib(cpu: dict[str, Any], seconds: float, total: int) -> float:
    return round(10 * sum(cpu["peers"]) * seconds / (total / MIB), 3)


def _small(pool: ClientPool, cluster: BenchCluster, clients: int, size: int, ops: int, clock: PhaseClock,
           tag: str) -> dict[str, Any]:
    addrs = [p.grpc_addr for p in cluster.peers]
    out = run_one(pool, addrs, [p.pid for p in cluster.peers], clients, size, ops, clock, tag)
    for kind in ("upload", "download"):
        out[kind]["peer_cpu_ms_per_op"] = _cpu_ms_per_op(out[kind])
    return out


def _large(client: DfsClient, cluster: BenchCluster, total: int, tag: str, stream: int) -> dict[str, Any]:
    pids = [p.pid for p in cluster.peers] + [os.getpid()]
    out = transfer_round(client, pids, total, f"bench/observability/{tag}.bin", stream, f"observability {tag}")
    out["upload_peer_cpu_ms_per_mib"] = _cpu_ms_per_mib(out["cpu_pct_upload"], out["upload_s"], total)
    out["download_peer_cpu_ms_per_mib"] = _cpu_ms_per_mib(out["cpu_pct_download"], out["download_s"], total)
    return out


def _best(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """Each figure's best over the rounds: the highest rate, the lowest CPU cost."""
    small = [r["small"] for r in rounds]
    large = [r["large"] for r in rounds]
    return {
        "upload_ops_s": max(s["upload"]["ops_per_s"] for s in small),
        "download_ops_s": max(s["download"]["ops_per_s"] for s in small),
        "upload_p99_ms": min(s["upload"]["p99_ms"] for s in small),
        "download_p99_ms": min(s["download"]["p99_ms"] for s in small),
        "upload_peer_cpu_ms_per_op": min(s["upload"]["peer_cpu_ms_per_op"] for s in small),
        "download_peer_cpu_ms_per_op": min(s["download"]["peer_cpu_ms_per_op"] for s in small),
        "large_upload_mb_s": max(r["upload_mb_s"] for r in large),
        "large_download_mb_s": max(r["download_mb_s"] for r in large),
        "large_upload_peer_cpu_ms_per_mib": min(r["upload_peer_cpu_ms_per_mib"] for r in large),
        "large_download_peer_cpu_ms_per_mib": min(r["download_peer_cpu_ms_per_mib"] for r in large),
    }


def _cost_pct(on: float, off: float) -> float:
    """How much slower `on` is than `off`, in % (negative: on was the faster)."""
    return round(100 * (off - on) / off, 2) if off else 0.0


def run(workdir: Path, quick: bool, client_procs: int = 2) -> dict[str, Any]:
    total = 32 * MIB if quick else 256 * MIB
    # Many short rounds rather than a few long ones: on a shared machine the best of each mode is
    # then more likely to come from a quiet moment.
    rounds = 1 if quick else 6
    clients, size, ops = (4, 64 * KIB, 5) if quick else (20, 64 * KIB, 60)
    order = _order(rounds)
    clock = PhaseClock(40.0 if quick else 110.0, 2 * len(order), cap=15.0)
    progress("observability: starting two 3-peer clusters (R=2): metrics and access log on, and both off")
    clusters: dict[str, BenchCluster] = {}
    try:
        for mode, flags in MODES.items():
            clusters[mode] = start_cluster(workdir / mode, extra=flags)
        sdk = {mode: DfsClient(c.peers[0].grpc_addr, timeout=600) for mode, c in clusters.items()}
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        try:
            for n, client in enumerate(sdk.values()):
                client.upload(UniqueData(stream=0xB0 + n).pieces(4 * MIB), name="bench/warmup")
                drain_download(client, "bench/warmup")
            with ClientPool(client_procs) as pool:
                for n, mode in enumerate(order):
                    tag = f"{mode}{n}"
                    progress(f"observability: round {n + 1}/{len(order)}, metrics and access log {mode}")
                    started = time.monotonic()
                    small = _small(pool, clusters[mode], clients, size, ops, clock, tag)
                    large = _large(sdk[mode], clusters[mode], total, tag, 0xB100 + n)
                    runs[mode].append({"small": small, "large": large,
                                       "seconds": round(time.monotonic() - started, 1)})
        finally:
            for client in sdk.values():
                client.close()
        best = {mode: _best(runs[mode]) for mode in MODES}
        cost = {key: _cost_pct(best["on"][key], best["off"][key])
                for key in ("upload_ops_s", "download_ops_s", "large_upload_mb_s", "large_download_mb_s")}
        cpu_cost = {key: _cost_pct(best["off"][key], best["on"][key]) for key in best["on"] if "_cpu_" in key}
        progress("observability: cost of metrics and access log (on slower than off): "
                 + ", ".join(f"{k} {v:+.1f}%" for k, v in cost.items()))
        return {
            "peers": 3,
            "replicas": 2,
            "clients": clients,
            "size": size,
            "ops_per_client": ops,
            "bytes": total,
            "rounds_per_mode": rounds,
            "order": order,
            "flags": {mode: list(flags) for mode, flags in MODES.items()},
            "best": best,
            "cost_pct": cost,
            "peer_cpu_cost_pct": cpu_cost,
            "runs": runs,
        }
    finally:
        for cluster in clusters.values():
            cluster.close()
