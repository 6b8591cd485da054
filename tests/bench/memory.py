"""Section 5, peer memory: each peer's peak RSS (VmHWM) during one big upload and during many at once.

Each run gets a fresh 3-peer cluster, so the peaks are separate. VmHWM is the kernel's high-water mark
of the process's resident set since it started (startup included); a sampler also records VmRSS every
0.2 s. The bench process's own peak is reported for the streamed upload to show the client holds
only pieces of the file.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client.sdk import DfsClient
from tests.bench.clients import ClientPool
from tests.bench.common import MIB, BenchCluster, UniqueData, mb_per_s, progress, rss_kib, start_cluster


class RssSampler:
    def __init__(self, pids: list[int], interval: float = 0.2) -> None:
        self.pids = pids
        self.interval = interval
        self.max_rss = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in self.pids:
                self.max_rss[pid] = max(self.max_rss[pid], rss_kib(pid).get("VmRSS", 0))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _peaks(cluster: BenchCluster, before: list[dict[str, int]], sampler: RssSampler) -> list[dict[str, float]]:
    out = []
    for peer, start in zip(cluster.peers, before, strict=True):
        now = rss_kib(peer.pid)
        out.append({
            "peer": peer.index,
            "pid": peer.pid,
            "vmhwm_after_start_mib": round(start.get("VmHWM", 0) / 1024, 1),
            "vmhwm_mib": round(now.get("VmHWM", 0) / 1024, 1),
            "sampled_max_vmrss_mib": round(sampler.max_rss[peer.pid] / 1024, 1),
            "vmrss_at_end_mib": round(now.get("VmRSS", 0) / 1024, 1),
        })
    return out


def big_upload(workdir: Path, total: int) -> dict[str, Any]:
    progress(f"memory: fresh 3-peer cluster, one {total // MIB} MiB upload streamed from a generator")
    cluster = start_cluster(workdir)
    try:
        before = cluster.rss()
        with RssSampler([p.pid for p in cluster.peers]) as sampler, \
                DfsClient(cluster.peers[0].grpc_addr, timeout=900) as client:
            t = time.perf_counter()
            result = client.upload(UniqueData(stream=0x6B).pieces(total, MIB), name="bench/memory/big.bin")
            seconds = time.perf_counter() - t
        if result.version.size != total:
            raise RuntimeError(f"stored {result.version.size} of {total} bytes")
        peaks = _peaks(cluster, before, sampler)
        progress(f"memory: big upload {mb_per_s(total, seconds):.1f} MB/s; peer peak RSS (MiB) "
                 f"{[p['vmhwm_mib'] for p in peaks]}")
        return {
            "bytes": total,
            "upload_s": round(seconds, 2),
            "upload_mb_s": round(mb_per_s(total, seconds), 1),
            "peers": peaks,
            "client_vmhwm_mib": round(rss_kib(os.getpid()).get("VmHWM", 0) / 1024, 1),
        }
    finally:
        cluster.close()


def many_uploads(
    workdir: Path, clients: int, size: int, client_procs: int, extra: Sequence[str] = ()
) -> dict[str, Any]:
    flags = f" (peer flags: {' '.join(extra)})" if extra else ""
    progress(f"memory: fresh 3-peer cluster, {clients} concurrent uploads of {size // MIB} MiB each{flags}")
    cluster = start_cluster(workdir, extra=extra)
    try:
        before = cluster.rss()
        addrs = [p.grpc_addr for p in cluster.peers]
        with ClientPool(client_procs) as pool:
            pool.setup(addrs, clients)
            with RssSampler([p.pid for p in cluster.peers]) as sampler:
                result = pool.phase("upload", size, 1, 120.0, "memory")
            pool.teardown()
        peaks = _peaks(cluster, before, sampler)
        summary = result.summary()
        progress(f"memory: {clients} concurrent uploads done in {summary['wall_s']} s, errors {summary['errors']}; "
                 f"peer peak RSS (MiB) {[p['vmhwm_mib'] for p in peaks]}")
        return {"clients": clients, "size": size, "uploads": summary, "peers": peaks}
    finally:
        cluster.close()


def run(workdir: Path, quick: bool, client_procs: int = 2) -> dict[str, Any]:
    big = big_upload(workdir / "big", 64 * MIB if quick else 1024 * MIB)
    many = many_uploads(workdir / "many", 10 if quick else 50, 4 * MIB if quick else 16 * MIB, client_procs)
    return {"big_upload": big, "concurrent_uploads": many, "limit_mib": 200}
