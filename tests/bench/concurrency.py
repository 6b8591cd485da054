"""Section 3, many clients: N clients upload, then download, files of 64 KiB and 1 MiB.

Clients are threads with their own DfsClient (one channel each) in worker processes (see clients.py),
spread round-robin over the 3 peers. Each phase starts all clients together and is bounded by an op
count per client and a time limit. Every upload is unique content (content addressing would skip
repeated chunks). A calibration run measures 20 clients in one worker process against two, which is
the evidence for running the clients in two processes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.bench.clients import ClientPool, PhaseResult
from tests.bench.common import KIB, MIB, CpuMeter, progress, start_cluster

FULL_PLAN: list[tuple[int, int, int]] = [  # (clients, size, ops per client and phase)
    (20, 64 * KIB, 100),
    (20, MIB, 20),
    (50, 64 * KIB, 40),
    (50, MIB, 8),
    (100, 64 * KIB, 20),
    (100, MIB, 4),
]
QUICK_PLAN: list[tuple[int, int, int]] = [(4, 64 * KIB, 3), (8, MIB, 2)]
SECTION_BUDGET_S = 200.0


def _label(size: int) -> str:
    return f"{size // KIB} KiB" if size < MIB else f"{size // MIB} MiB"


class PhaseClock:
    """Spreads what is left of the section's time over the phases still to run (each at most `cap` s)."""

    def __init__(self, budget_s: float, phases: int, cap: float) -> None:
        self.deadline = time.monotonic() + budget_s
        self.left = phases
        self.cap = cap

    def next_max_s(self) -> float:
        share = (self.deadline - time.monotonic()) / max(self.left, 1)
        self.left -= 1
        return max(3.0, min(self.cap, share))


def run_one(pool: ClientPool, addrs: list[str], peer_pids: list[int], clients: int, size: int, ops: int,
            clock: PhaseClock, tag: str) -> dict[str, Any]:
    pool.setup(addrs, clients)
    out: dict[str, Any] = {"clients": clients, "size": size, "ops_per_client": ops, "client_procs": len(pool.pids)}
    try:
        for kind in ("upload", "download"):
            max_s = clock.next_max_s()
            with CpuMeter(peer_pids + pool.pids) as cpu:
                result: PhaseResult = pool.phase(kind, size, ops, max_s, tag)
            summary = result.summary()
            summary["peer_cpu_pct"] = cpu.result[: len(peer_pids)]
            summary["max_s"] = round(max_s, 1)
            out[kind] = summary
            progress(
                f"concurrency: {clients} clients x {_label(size)} {kind}: {summary['ops_per_s']} ops/s, "
                f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, errors {summary['errors']}, "
                f"peer CPU {summary['peer_cpu_pct']}%, client CPU {summary['client_worker_cpu_pct']}%"
            )
    finally:
        pool.teardown()
    return out


def run(workdir: Path, quick: bool, client_procs: int = 2) -> dict[str, Any]:
    plan = QUICK_PLAN if quick else FULL_PLAN
    # Ops per client bound each phase; time bounds it too, so a slow or busy machine still finishes
    # the section within its budget (phases cut short say so: hit_deadline).
    budget_s = 60.0 if quick else SECTION_BUDGET_S
    phases = 2 * (len(plan) + (0 if quick else 2))
    clock = PhaseClock(budget_s, phases, cap=20.0 if quick else 45.0)
    progress("concurrency: starting a 3-peer cluster (R=2)")
    cluster = start_cluster(workdir / "cluster")
    runs: list[dict[str, Any]] = []
    calibration: dict[str, Any] = {}
    try:
        addrs = [p.grpc_addr for p in cluster.peers]
        peer_pids = [p.pid for p in cluster.peers]
        if not quick:
            progress("concurrency: calibration, 20 clients x 64 KiB as threads of ONE client process")
            with ClientPool(1) as single:
                calibration["one_process"] = run_one(single, addrs, peer_pids, 20, 64 * KIB, 20, clock, "cal1")
        with ClientPool(client_procs) as pool:
            if not quick:
                progress(f"concurrency: calibration, same load in {client_procs} client processes")
                calibration[f"{client_procs}_processes"] = run_one(
                    pool, addrs, peer_pids, 20, 64 * KIB, 20, clock, "cal2")
            for clients, size, ops in plan:
                progress(f"concurrency: {clients} clients x {_label(size)}, {ops} ops each per phase")
                runs.append(run_one(pool, addrs, peer_pids, clients, size, ops, clock, f"c{clients}s{size}"))
        return {
            "peers": 3,
            "replicas": 2,
            "client_procs": client_procs,
            "client_model": "threads with one DfsClient (channel) each, in client worker processes",
            "section_budget_s": budget_s,
            "runs": runs,
            "calibration": calibration,
            "peer_rss_kib": cluster.rss(),
        }
    finally:
        cluster.close()
