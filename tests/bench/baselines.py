"""Section 1, baselines measured in the same run: raw loopback gRPC, one hop per transport, the local
disk and hashing.

gRPC: one stream of 1 MiB messages to/from `rawgrpc_server`'s Sink and Source (in a `hop_server`
subprocess, with the peer's server options, no storage), through a channel with the SDK's client
options; CPU per MiB from both processes' own nanosecond clocks. Disk: 1 MiB chunk files written
with the chunk store's recipe (temp file, O_DIRECT write, fsync, link, fsync dir), then read back with
its read recipe (O_DIRECT), so neither figure is the page cache's. Hashing: SHA-256 and XXH3-64 of
1 MiB pieces on one thread, the CPU each verified byte costs.

Hops (hops.py): one loopback hop of 1 MiB pieces, sender and receiver in separate processes, on
grpc.aio, aiohttp, a plain asyncio stream and the peers' own chunk stream: MB/s and CPU per MiB of
both ends together.

From the CPU per MiB of each hop a large transfer makes (client to entry peer: the raw gRPC run, whose
client is the SDK's synchronous gRPC; peer to peer: the chunk-stream hop) and the SHA-256 cost, `floors`
gives the CPU a large transfer cannot do without, per MiB, on this machine (see `FLOORS`). Divided into
the cores, that is the fastest a large upload or download could go here even if everything else were
free.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from client.sdk import MAX_MESSAGE_BYTES
from peer.storage.chunkstore import write_durable, xxh3_64
from peer.storage.directio import read_all
from proto import dfs_pb2 as pb
from tests.bench import hops as hop_baselines
from tests.bench import rawgrpc_server as raw
from tests.bench.common import MIB, CpuMeter, UniqueData, mb_per_s, progress

SDK_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


def grpc_baseline(workdir: Path, total: int, repeats: int) -> dict[str, Any]:
    """Best of `repeats` single-stream uploads and downloads of `total` bytes."""
    server = hop_baselines.HopServer("grpc", workdir)  # rawgrpc_server's Sink and Source
    try:
        addr = server.addr
        channel = grpc.insecure_channel(addr, options=SDK_CHANNEL_OPTIONS)
        try:
            grpc.channel_ready_future(channel).result(timeout=10)
            sink = channel.stream_unary(raw.SINK, request_serializer=pb.UploadRequest.SerializeToString,
                                        response_deserializer=pb.UploadReply.FromString)
            source = channel.unary_stream(raw.SOURCE, request_serializer=pb.DownloadRequest.SerializeToString,
                                          response_deserializer=pb.DownloadReply.FromString)
            data = UniqueData(stream=0xBA5E)
            # Warm-up: connection, HTTP/2 windows, code paths.
            sink(iter([pb.UploadRequest(data=p) for p in data.pieces(8 * MIB)]), timeout=60)
            for _ in source(pb.DownloadRequest(length=8 * MIB), timeout=60):
                pass
            uploads, downloads = [], []
            up_cpu: list[CpuMeter] = []
            down_cpu: list[CpuMeter] = []
            # CPU seconds of client + server per run, on nanosecond clocks (the server reports its own).
            up_cpu_s: list[float] = []
            down_cpu_s: list[float] = []
            pids = [server.proc.pid, os.getpid()]
            for _ in range(repeats):
                c0 = server.cpu() + time.process_time()
                with CpuMeter(pids) as cpu:
                    t = time.perf_counter()
                    reply = sink((pb.UploadRequest(data=p) for p in data.pieces(total, raw.PIECE)), timeout=120)
                    uploads.append(time.perf_counter() - t)
                up_cpu_s.append(server.cpu() + time.process_time() - c0)
                up_cpu.append(cpu)
                if reply.version.size != total:
                    raise RuntimeError(f"raw sink received {reply.version.size} of {total} bytes")
                received = 0
                c0 = server.cpu() + time.process_time()
                with CpuMeter(pids) as cpu:
                    t = time.perf_counter()
                    for msg in source(pb.DownloadRequest(length=total), timeout=120):
                        received += len(msg.data)
                    downloads.append(time.perf_counter() - t)
                down_cpu_s.append(server.cpu() + time.process_time() - c0)
                down_cpu.append(cpu)
                if received != total:
                    raise RuntimeError(f"raw source sent {received} of {total} bytes")
        finally:
            channel.close()
    finally:
        server.close()
    up, down = min(uploads), min(downloads)
    return {
        "bytes": total,
        "message_bytes": raw.PIECE,
        "server_max_message": raw.PEER_MAX_MESSAGE,
        "server": "grpc.aio in a subprocess, the peer's server_options, no storage",
        "repeats": repeats,
        "upload_s": [round(s, 4) for s in uploads],
        "download_s": [round(s, 4) for s in downloads],
        "upload_mb_s": round(mb_per_s(total, up), 1),
        "download_mb_s": round(mb_per_s(total, down), 1),
        "cpu_pct_upload": {"server": up_cpu[uploads.index(up)].result[0],
                           "client": up_cpu[uploads.index(up)].result[1]},
        "cpu_pct_download": {"server": down_cpu[downloads.index(down)].result[0],
                             "client": down_cpu[downloads.index(down)].result[1]},
        # Client and server together, the lowest of the runs.
        "cpu_ms_per_mib_upload": round(1000 * min(up_cpu_s) / (total / MIB), 3),
        "cpu_ms_per_mib_download": round(1000 * min(down_cpu_s) / (total / MIB), 3),
    }


def _write_chunks(root: Path, data: UniqueData, total: int, paths: list[Path], latencies: list[float]) -> None:
    """The chunk store's own write recipe per 1 MiB piece (temp file, write, fsync, link, fsync the
    directory), called directly so the baseline measures exactly what a peer does."""
    for piece in data.pieces(total, MIB):
        name = uuid.uuid4().hex * 2
        directory = root / name[:2] / name[2:4]
        t = time.perf_counter()
        write_durable(directory / name, piece, replace=False)
        latencies.append(time.perf_counter() - t)
        paths.append(directory / name)


def disk_baseline(workdir: Path, total: int) -> dict[str, Any]:
    """Writes `total` bytes as 1 MiB chunk files the way the chunk store does, then reads them back the same way;
    then the same bytes again from two writer threads at once (R=2 puts two writers on one disk)."""
    root = workdir / "chunks"
    root.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    latencies: list[float] = []
    t0 = time.perf_counter()
    _write_chunks(root, UniqueData(stream=0xD15C), total, paths, latencies)
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    read = 0
    for path in paths:
        read += len(read_all(path))
    read_s = time.perf_counter() - t0
    latencies.sort()

    root2 = workdir / "chunks2"
    root2.mkdir(parents=True, exist_ok=True)
    lat2: list[float] = []
    writers = [
        threading.Thread(target=_write_chunks, args=(root2, UniqueData(stream=0xD15D + i), total // 2, [], lat2))
        for i in range(2)
    ]
    t0 = time.perf_counter()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    write2_s = time.perf_counter() - t0
    # The files stay until the run's directory goes at the end: on ext4 without a journal, inodes
    # freed in the last minute are skipped (and scanned past) by every new file's allocation, which
    # would tax the next sections for this section's clean-up.
    return {
        "bytes": total,
        "files": len(paths),
        "dir": str(workdir),
        "write_mb_s": round(mb_per_s(total, write_s), 1),
        "write_ms_per_chunk_p50": round(latencies[len(latencies) // 2] * 1000, 2),
        "write_2_writers_mb_s": round(mb_per_s(total, write2_s), 1),
        "read_mb_s": round(mb_per_s(read, read_s), 1),
        "read_note": "the chunk store's read recipe (O_DIRECT where the file system allows it, so not the page cache)",
        "r2_upload_ceiling_mb_s": round(mb_per_s(total, min(write_s, write2_s)) / 2, 1),
        "r2_note": "every uploaded byte is written and fsynced twice on this one disk (R=2, all peers local)",
    }


# Per MiB of a large transfer through 3 peers at R=2, where the peer the client talks to owns 2 of
# every 3 chunks: (client gRPC hops, peer-to-peer chunk-stream hops, SHA-256 passes, the chunk-stream
# hop's direction).
#   upload:   client -> entry over gRPC (1 hop); entry -> the other owner for 4/3 copies over chunk
#             streams (PUT); SHA-256 by the client (end to end) and twice by the entry (the chunk id,
#             the file's SHA-256): 3 passes. (The other owners check the body tag and XXH3-64 only.)
#   download: entry -> client over gRPC (1 hop); holder -> entry over chunk streams (GET) for the 1/3 of
#             chunks the entry lacks; SHA-256 on every read from disk (1 pass) and by the client (end to
#             end): 2 passes. (A chunk from a holder is checked on arrival against its body tag and the
#             holder's XXH3-64 only.)
FLOORS = {"upload": (1.0, 4 / 3, 3.0, "chunks_put"), "download": (1.0, 1 / 3, 2.0, "chunks_get")}
PEER_HOP_FALLBACK = "grpc_aio"
"""The hop priced for peer-to-peer copies that went over gRPC (a peer without chunk streams): grpc.aio."""


def hash_baseline(total: int) -> dict[str, Any]:
    """Single-thread SHA-256 and XXH3-64 of `total` bytes in 1 MiB pieces (both release the GIL)."""
    piece = os.urandom(MIB)
    out: dict[str, Any] = {}
    for name, digest in (("sha256", lambda b: hashlib.sha256(b).digest()), ("xxh3_64", xxh3_64)):
        digest(piece)
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(total // MIB):
            digest(piece)
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        out[f"{name}_mb_s"] = round(mb_per_s(total, wall), 1)
        out[f"{name}_ms_per_mib"] = round(1000 * cpu / (total // MIB), 3)
    return out


def cpu_floors(grpc: dict[str, Any], hops: dict[str, Any], hashing: dict[str, Any], cores: int) -> dict[str, Any]:
    """The CPU per MiB that the hops and SHA-256 passes of FLOORS cost at the rates measured here, and
    the throughput that leaves on `cores` cores with nothing else costing anything. The client hop is
    priced at the raw gRPC run (the SDK's synchronous client against grpc.aio), the peer-to-peer hops
    at the chunk stream's; `floor_ms_per_mib_grpc_peers` prices those at grpc.aio instead, the floor
    for a cluster whose peers copy chunks over gRPC."""
    out: dict[str, Any] = {"cores": cores, "sha256_ms_per_mib": hashing["sha256_ms_per_mib"]}
    by_key = hops["hops"]
    for way, (client_hops, peer_hops, passes, stream_key) in FLOORS.items():
        client_ms = grpc[f"cpu_ms_per_mib_{way}"]
        stream_ms = by_key[stream_key]["cpu_ms_per_mib"]
        sha_ms = passes * hashing["sha256_ms_per_mib"]
        floor_ms = client_hops * client_ms + peer_hops * stream_ms + sha_ms
        grpc_peers_ms = client_hops * client_ms + peer_hops * by_key[PEER_HOP_FALLBACK]["cpu_ms_per_mib"] + sha_ms
        out[way] = {
            "client_hops": round(client_hops, 2),
            "client_hop": "grpc (sync client)",
            "client_hop_ms_per_mib": round(client_ms, 3),
            "peer_hops": round(peer_hops, 2),
            "peer_hop": stream_key,
            "peer_hop_ms_per_mib": round(stream_ms, 3),
            "sha256_passes": round(passes, 2),
            "floor_ms_per_mib": round(floor_ms, 2),
            "floor_ms_per_mib_grpc_peers": round(grpc_peers_ms, 2),
            "ceiling_mb_s": round(cores * 1000 / floor_ms * MIB / 1e6, 1),
        }
    return out


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    total = 32 * MIB if quick else 256 * MIB
    progress(f"baselines: raw gRPC single stream, {total // MIB} MiB up and down (subprocess server)")
    g = grpc_baseline(workdir / "rawgrpc", total, repeats=1 if quick else 3)
    progress(f"baselines: raw gRPC upload {g['upload_mb_s']} MB/s, download {g['download_mb_s']} MB/s")
    progress(f"baselines: one loopback hop per transport, {total // MIB} MiB in 1 MiB pieces (subprocess server)")
    hops = hop_baselines.measure(workdir / "hops", total, repeats=1 if quick else 3)
    progress(f"baselines: disk write-with-fsync of {total // MIB} x 1 MiB chunk files")
    d = disk_baseline(workdir / "disk", total)
    progress(f"baselines: disk write {d['write_mb_s']} MB/s (2 writers: {d['write_2_writers_mb_s']} MB/s), "
             f"read {d['read_mb_s']} MB/s")
    h = hash_baseline(total)
    progress(f"baselines: SHA-256 {h['sha256_mb_s']} MB/s, XXH3-64 {h['xxh3_64_mb_s']} MB/s (one thread)")
    return {"grpc": g, "hops": hops, "disk": d, "hashing": h, "floors": cpu_floors(g, hops, h, os.cpu_count() or 1)}
