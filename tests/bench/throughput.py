"""Section 2, one client and one large file through a 3-peer cluster with R=2.

The upload streams from a generator of 1 MiB pieces (the client never holds the file). Both directions
are verified end to end by the SDK itself, which hashes every byte it sends and fails unless the stored
version has that SHA-256, and hashes every byte it receives and fails unless they match the version's
SHA-256; the bench hashes nothing a second time, which would add client CPU the product does not spend. Like the gRPC
baseline, the figure is the best of `repeats` rounds (each a new file); every round is recorded.

CPU: every process of the transfer together (the three peers and this client process), CPU ms per MiB
moved, the lowest of the rounds; the report sets it beside the floor `baselines.cpu_floors` computes
for the peer-to-peer hop the peers actually used (`peer_hop`: chunk streams, unless a peer's log says
it copied chunk data over gRPC instead).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from client.sdk import DfsClient
from tests.bench.common import (
    MIB,
    BenchCluster,
    CpuMeter,
    UniqueData,
    drain_download,
    mb_per_s,
    progress,
    rss_kib,
    start_cluster,
)


def transfer_round(client: DfsClient, pids: list[int], total: int, name: str, stream: int,
                   label: str) -> dict[str, Any]:
    """One row's measurement: `total` new bytes uploaded through `client`'s peer from a generator of
    1 MiB pieces, then downloaded; both verified by the SDK. `pids`: the peers, then this process."""
    data = UniqueData(stream=stream)
    with CpuMeter(pids) as up_cpu:
        t = time.perf_counter()
        result = client.upload(data.pieces(total, MIB), name=name)
        up_s = time.perf_counter() - t
    if result.version.size != total:
        raise RuntimeError("the stored version does not match what was sent")
    progress(f"{label}: upload {mb_per_s(total, up_s):.1f} MB/s; downloading")
    with CpuMeter(pids) as down_cpu:
        t = time.perf_counter()
        received, got_hash = drain_download(client, name)
        down_s = time.perf_counter() - t
    if received != total or got_hash != result.version.sha256:
        raise RuntimeError(f"download mismatch: {received} bytes, sha256 {got_hash}")
    progress(f"{label}: download {mb_per_s(total, down_s):.1f} MB/s, sha256 verified")
    return {
        "upload_s": round(up_s, 3),
        "download_s": round(down_s, 3),
        "upload_mb_s": round(mb_per_s(total, up_s), 1),
        "download_mb_s": round(mb_per_s(total, down_s), 1),
        "cpu_pct_upload": {"peers": up_cpu.result[:-1], "client": up_cpu.result[-1]},
        "cpu_pct_download": {"peers": down_cpu.result[:-1], "client": down_cpu.result[-1]},
        "cpu_ms_per_mib_upload": round(up_cpu.ms_per_mib(total), 3),
        "cpu_ms_per_mib_download": round(down_cpu.ms_per_mib(total), 3),
        "chunks": result.version.chunk_count,
    }


# What StreamChunkPeers logs when a peer serves no chunk streams and chunk data to it goes over gRPC.
GRPC_FALLBACK_LOG = "serves no chunk streams"


def peer_hop(cluster: BenchCluster) -> str:
    """The hop peers copied chunk data over: "chunk stream", or "grpc" when some peer fell back to gRPC."""
    for peer in cluster.peers:
        try:
            if GRPC_FALLBACK_LOG in peer.log_path.read_text(errors="replace"):
                return "grpc"
        except OSError:
            continue
    return "chunk stream"


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    total = 32 * MIB if quick else 256 * MIB
    repeats = 1 if quick else 2
    progress("large file: starting a 3-peer cluster (R=2)")
    cluster = start_cluster(workdir / "cluster")
    try:
        peer = cluster.peers[0]
        pids = [p.pid for p in cluster.peers] + [os.getpid()]
        rounds: list[dict[str, Any]] = []
        with DfsClient(peer.grpc_addr, timeout=600) as client:
            warm = UniqueData(stream=0x3A)
            client.upload(warm.pieces(4 * MIB), name="bench/large/warmup")
            drain_download(client, "bench/large/warmup")
            for n in range(repeats):
                progress(f"large file: round {n + 1}/{repeats}: uploading {total // MIB} MiB through peer0 "
                         "from a generator of 1 MiB pieces")
                rounds.append(transfer_round(client, pids, total, f"bench/large/file{n}.bin", 0x1A + n, "large file"))
        return {
            "bytes": total,
            "peers": 3,
            "replicas": 2,
            "via": "peer0 (upload and download)",
            "repeats": repeats,
            "upload_mb_s": max(r["upload_mb_s"] for r in rounds),
            "download_mb_s": max(r["download_mb_s"] for r in rounds),
            "sha256_verified": True,
            "chunks": rounds[-1]["chunks"],
            "cpu_ms_per_mib_upload": min(r["cpu_ms_per_mib_upload"] for r in rounds),
            "cpu_ms_per_mib_download": min(r["cpu_ms_per_mib_download"] for r in rounds),
            "cpu_processes": "3 peers + the client process",
            "peer_hop": peer_hop(cluster),
            "rounds": rounds,
            "client_vmhwm_mib": round(rss_kib(os.getpid()).get("VmHWM", 0) / 1024, 1),
        }
    finally:
        cluster.close()
