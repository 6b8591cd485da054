"""Section 9, redundancy policies side by side: `rep:2`, `rep:3`, `ec:4+2`, `ec:6+3` in one 9-peer cluster.

For each policy, one client uploads a new large file through peer0 with that policy (from a generator
of 1 MiB pieces, verified by the SDK) and downloads it whole (verified chunk by chunk and end to end);
the bytes the peers' chunk directories grew by give the storage cost per byte stored. Then the
policy's tolerance is used up: as many peers as it may lose (R - 1, or M) are SIGKILLed and the file
is downloaded again (degraded: a coded read decodes from parity), and the peers restarted. Last,
one peer is killed for good (a short `--dead-grace`, so the ring drops it) and the section times how
long the others take to restore every copy and every fragment on its owner under the new ring, per
GiB the lost peer held. The figure for each policy is the best of `repeats` rounds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from client.sdk import DfsClient
from peer.metadata.open import open_store
from peer.ring.hashring import HashRing
from peer.ring.policy import Policy
from tests.bench.common import (
    MIB,
    BenchCluster,
    BenchPeer,
    UniqueData,
    drain_download,
    mb_per_s,
    progress,
    start_cluster,
)

POLICIES = ("rep:2", "rep:3", "ec:4+2", "ec:6+3")
PEERS = 10  # ec:6+3 spans nine, and must still fit once one peer is lost
DEAD_GRACE_S = 3.0
RESTORE_LIMIT_S = 300.0


class SpreadData(UniqueData):
    """UniqueData tagged every 64 KiB, not only at the start of a piece: a fragment (1/K of a chunk)
    then never repeats between chunks, so content addressing cannot dedupe the fragments of this
    synthetic data and the bytes on disk are those of real, varied data."""

    STRIDE = 64 * 1024

    def piece(self, size: int) -> bytes:
        parts = []
        for start in range(0, size, self.STRIDE):
            self.count += 1
            tag = self._TAG.pack(self.stream, self.count, self.nonce)
            end = min(start + self.STRIDE, size)
            parts += [tag[: end - start], memoryview(self.base)[start + len(tag) : end]]
        return b"".join(parts)


def _disk_bytes(cluster: BenchCluster) -> int:
    return sum(f.stat().st_size for p in cluster.peers for f in (p.data_dir / "chunks").rglob("*") if f.is_file())


def _round(client: DfsClient, cluster: BenchCluster, policy: str, total: int, name: str, stream: int) -> dict[str, Any]:
    before = _disk_bytes(cluster)
    data = SpreadData(stream=stream)
    t = time.perf_counter()
    result = client.upload(data.pieces(total, MIB), name=name, policy=policy)
    up_s = time.perf_counter() - t
    if result.version.size != total:
        raise RuntimeError("the stored version does not match what was sent")
    stored = _disk_bytes(cluster) - before
    t = time.perf_counter()
    received, got = drain_download(client, name)
    down_s = time.perf_counter() - t
    if received != total or got != result.version.sha256:
        raise RuntimeError(f"{policy}: download mismatch")
    progress(f"policies {policy}: upload {mb_per_s(total, up_s):.1f} MB/s, download {mb_per_s(total, down_s):.1f} "
             f"MB/s, {stored / total:.2f} bytes on disk per byte")
    return {"upload_mb_s": round(mb_per_s(total, up_s), 1), "download_mb_s": round(mb_per_s(total, down_s), 1),
            "disk_per_byte": round(stored / total, 3), "sha256": result.version.sha256}


def _degraded(cluster: BenchCluster, policy: str, name: str, total: int, sha256: str) -> dict[str, Any]:
    lose = Policy.parse(policy).parity
    victims = cluster.peers[1 : 1 + lose]
    for victim in victims:
        victim.kill()
    try:
        with DfsClient(cluster.peers[0].grpc_addr, timeout=600) as client:
            t = time.perf_counter()
            received, got = drain_download(client, name)
            seconds = time.perf_counter() - t
        if received != total or got != sha256:
            raise RuntimeError(f"{policy}: degraded download mismatch")
    finally:
        for victim in victims:
            cluster.restart(victim)
        cluster.wait_converged(60)
    progress(f"policies {policy}: degraded download ({lose} peers down) {mb_per_s(total, seconds):.1f} MB/s")
    return {"peers_down": lose, "download_mb_s": round(mb_per_s(total, seconds), 1)}


def _missing(cluster: BenchCluster, alive: list[BenchPeer]) -> tuple[int, int]:
    """(pieces not on their owner under the ring of `alive`, pieces checked): every copy of a
    replicated chunk on each of its owners, fragment i of a coded chunk on owner i."""
    ring = HashRing.build([p.node_id for p in alive], 150)
    by_id = {p.node_id: p for p in alive}
    store = open_store(cluster.metadata)
    try:
        missing = checked = 0
        for record in store.list_files("bench/policies/", 1000, "").files:
            width = Policy.parse(record.policy).width
            for ref in record.chunks:
                owners = ring.owners(ref.chunk_id, width)
                wanted = zip(owners, ref.fragments, strict=True) if ref.fragments else ((o, ref.chunk_id)
                                                                                         for o in owners)
                for owner, stored_id in wanted:
                    checked += 1
                    missing += not by_id[owner].chunk_path(stored_id).exists()
        return missing, checked
    finally:
        store.close()


def _restore(cluster: BenchCluster) -> dict[str, Any]:
    victim = cluster.peers[-1]
    held = sum(f.stat().st_size for f in (victim.data_dir / "chunks").rglob("*") if f.is_file())
    victim.kill()
    alive = [p for p in cluster.peers if p is not victim]
    t = time.monotonic()
    while True:
        missing, checked = _missing(cluster, alive)
        if missing == 0:
            break
        if time.monotonic() - t > RESTORE_LIMIT_S:
            raise RuntimeError(f"{missing} of {checked} pieces still not restored after {RESTORE_LIMIT_S:g} s")
        time.sleep(1.0)
    seconds = time.monotonic() - t
    progress(f"policies: full redundancy restored {seconds:.1f} s after losing a peer that held "
             f"{held / MIB:.0f} MiB")
    return {"seconds": round(seconds, 1), "held_mib": round(held / MIB, 1),
            "s_per_gib_held": round(seconds / max(held / 2**30, 1e-9), 1), "pieces": checked,
            "includes_dead_grace_s": DEAD_GRACE_S}


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    total = 32 * MIB if quick else 256 * MIB
    repeats = 1 if quick else 2
    progress(f"policies: starting a {PEERS}-peer cluster")
    cluster = start_cluster(workdir / "cluster", n=PEERS,
                            extra=("--dead-grace", str(DEAD_GRACE_S), "--repair-interval", "1"))
    try:
        out: dict[str, Any] = {"bytes": total, "peers": PEERS, "repeats": repeats, "policies": {}}
        with DfsClient(cluster.peers[0].grpc_addr, timeout=600) as client:
            warm = UniqueData(stream=0x70)
            client.upload(warm.pieces(4 * MIB), name="bench/warmup-policies")
            for p_index, policy in enumerate(POLICIES):
                rounds = [_round(client, cluster, policy, total, f"bench/policies/{policy}-{n}.bin",
                                 0x71 + 8 * p_index + n) for n in range(repeats)]
                out["policies"][policy] = {
                    "upload_mb_s": max(r["upload_mb_s"] for r in rounds),
                    "download_mb_s": max(r["download_mb_s"] for r in rounds),
                    "disk_per_byte": rounds[-1]["disk_per_byte"],
                    "rounds": rounds,
                }
        for policy in POLICIES:
            sha = out["policies"][policy]["rounds"][-1]["sha256"]
            name = f"bench/policies/{policy}-{repeats - 1}.bin"
            out["policies"][policy]["degraded"] = _degraded(cluster, policy, name, total, sha)
        out["restore_after_losing_a_peer"] = _restore(cluster)
        rep2 = out["policies"]["rep:2"]
        ec42 = out["policies"]["ec:4+2"]
        out["ec42_vs_rep2_pct"] = {k: round(100 * ec42[k] / rep2[k], 1) for k in ("upload_mb_s", "download_mb_s")}
        return out
    finally:
        cluster.close()
