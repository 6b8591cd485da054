"""Section 7, the S3 endpoint beside the gRPC path: boto3 at its defaults against the same 3-peer R=2
cluster the SDK measures in the same section, so every ratio compares figures of one run.

- Large object: one 256 MiB object, `put_object` from memory and `get_object` read in 1 MiB pieces,
  against the SDK's upload (from a generator) and download of another 256 MiB; best of `rounds`.
  The S3 figures include what boto3 does by default over HTTP: it hashes the payload for its
  signature and adds a CRC32 checksum on PUT, and checks the SHA-256 the peer returns on GET.
- 20 concurrent clients x 64 KiB objects, PUT then GET: boto3 clients (one each) as threads of two
  worker processes, and the SDK's clients in the same arrangement (tests/bench/clients.py).
- One client, 4 KiB objects: PUT then GET, one after another, boto3 and the SDK.
- ListObjectsV2 over 100,000 keys (1000 per page, the S3 maximum): keys listed per second, and the
  serving peer's RSS while it lists. The keys are empty objects committed straight into the
  cluster's metadata store before the peers start, which takes seconds where 100,000 PUTs would
  take minutes; a listing reads only metadata, so it sees them as any other object.

Every S3 request goes to peer0's endpoint (the 20 clients are spread over the three peers, as the
SDK's are); the peers run without authentication, so any access key signs.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from client.sdk import DfsClient
from peer.metadata.sqlite import SqliteStore
from peer.metadata.store import BucketRecord, NewVersion
from tests.bench.clients import ClientPool, PhaseSpec, _Worker
from tests.bench.common import (
    KIB,
    MIB,
    UniqueData,
    drain_download,
    mb_per_s,
    percentile,
    progress,
    rss_kib,
    start_cluster,
)
from tests.bench.memory import RssSampler

BUCKET = "bench"
LIST_BUCKET = "bench-list"
REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
EMPTY_MD5 = hashlib.md5(b"", usedforsecurity=False).hexdigest()


def s3_client(endpoint: str, timeout: float = 120.0, pool: int = 10) -> Any:
    """boto3 at its defaults (checksums included), path style, no retries: a failure counts as one."""
    session = boto3.session.Session()
    return session.client(
        "s3", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id="AKIDBENCH", aws_secret_access_key="bench-secret-any-works-without-auth",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      connect_timeout=10, read_timeout=timeout, max_pool_connections=pool),
    )


# ------------------------------------------------------------------------------- S3 client workers


class _S3Worker(_Worker):
    """The SDK workers' threads and phases (clients.py), each client a boto3 client of its own."""

    def setup(self, addrs: list[str], client_ids: list[int], timeout: float) -> None:
        self.teardown()
        for cid in client_ids:
            client = s3_client(addrs[cid % len(addrs)], timeout)
            client.head_bucket(Bucket=BUCKET)  # opens the connection before any timed op
            self.clients[cid] = client
            self.names[cid] = []
            self.data[cid] = UniqueData(stream=(os.getpid() << 20) + cid, base_size=MIB)

    def _client_loop(self, cid: int, spec: PhaseSpec, out: dict[int, dict[str, Any]]) -> None:
        client: Any = self.clients[cid]
        data, names = self.data[cid], self.names[cid]
        latencies: list[float] = []
        errors: list[str] = []
        nbytes = 0
        first_start = last_end = 0.0
        hit_deadline = False
        delay = spec.start_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        download_names = list(names)
        for i in range(spec.ops):
            if time.monotonic() >= spec.deadline:
                hit_deadline = True
                break
            if spec.kind == "download" and not download_names:
                break
            t = time.monotonic()
            first_start = first_start or t
            try:
                if spec.kind == "upload":
                    key = f"{spec.tag}/c{cid}/{i}"
                    client.put_object(Bucket=BUCKET, Key=key, Body=data.piece(spec.size))
                    names.append(key)
                    nbytes += spec.size
                else:
                    got = client.get_object(Bucket=BUCKET, Key=download_names[i % len(download_names)])
                    nbytes += len(got["Body"].read())
                latencies.append(time.monotonic() - t)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and sampled
                errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            last_end = time.monotonic()
        out[cid] = {
            "latencies": latencies, "errors": len(errors), "error_samples": errors[:2], "bytes": nbytes,
            "first_start": first_start, "last_end": last_end, "hit_deadline": hit_deadline,
        }


def _s3_worker_main(conn: Connection) -> None:
    worker = _S3Worker()
    try:
        while True:
            msg = conn.recv()
            if msg[0] == "setup":
                worker.setup(msg[1], msg[2], msg[3])
                conn.send(("ok",))
            elif msg[0] == "phase":
                conn.send(("result", worker.phase(msg[1])))
            elif msg[0] == "teardown":
                worker.teardown()
                conn.send(("ok",))
            else:
                return
    except (EOFError, KeyboardInterrupt):
        return
    finally:
        worker.teardown()


class S3ClientPool(ClientPool):
    """ClientPool whose workers run boto3 clients; `setup` takes endpoint URLs instead of gRPC addresses."""

    def __init__(self, procs: int = 2) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for i in range(procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_s3_worker_main, args=(child,), name=f"bench-s3-clients-{i}", daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self.clients = 0


# ------------------------------------------------------------------------------------- phases


def _large(s3: Any, grpc: DfsClient, total: int, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"bytes": total, "rounds": rounds, "s3": [], "grpc": []}
    for n in range(rounds):
        body = b"".join(UniqueData(stream=0x5300 + n).pieces(total, MIB))
        md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        key = f"large/round{n}.bin"
        t = time.perf_counter()
        put = s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        put_s = time.perf_counter() - t
        del body
        if put["ETag"].strip('"') != md5:
            raise RuntimeError(f"S3 PUT answered ETag {put['ETag']}, the body's MD5 is {md5}")
        t = time.perf_counter()
        got = s3.get_object(Bucket=BUCKET, Key=key)
        received = 0
        for piece in got["Body"].iter_chunks(MIB):
            received += len(piece)
        get_s = time.perf_counter() - t
        if received != total:
            raise RuntimeError(f"S3 GET returned {received} of {total} bytes")
        out["s3"].append({"put_mb_s": round(mb_per_s(total, put_s), 1), "get_mb_s": round(mb_per_s(total, get_s), 1),
                          "sha256_checked_by_boto3": "ChecksumSHA256" in got})
        progress(f"s3: round {n + 1}/{rounds}: S3 PUT {mb_per_s(total, put_s):.1f} MB/s, "
                 f"GET {mb_per_s(total, get_s):.1f} MB/s")

        name = f"{BUCKET}/large/grpc{n}.bin"
        t = time.perf_counter()
        result = grpc.upload(UniqueData(stream=0x6700 + n).pieces(total, MIB), name=name)
        up_s = time.perf_counter() - t
        t = time.perf_counter()
        received, digest = drain_download(grpc, name)
        down_s = time.perf_counter() - t
        if received != total or digest != result.version.sha256:
            raise RuntimeError(f"gRPC download mismatch: {received} bytes, sha256 {digest}")
        out["grpc"].append({"put_mb_s": round(mb_per_s(total, up_s), 1),
                            "get_mb_s": round(mb_per_s(total, down_s), 1)})
        progress(f"s3: round {n + 1}/{rounds}: gRPC upload {mb_per_s(total, up_s):.1f} MB/s, "
                 f"download {mb_per_s(total, down_s):.1f} MB/s")
    for path in ("s3", "grpc"):
        out[f"{path}_put_mb_s"] = max(r["put_mb_s"] for r in out[path])
        out[f"{path}_get_mb_s"] = max(r["get_mb_s"] for r in out[path])
    return out


def _concurrent(cluster_s3: list[str], cluster_grpc: list[str], clients: int, size: int, ops: int, max_s: float,
                client_procs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"clients": clients, "size": size, "ops_per_client": ops, "client_procs": client_procs}
    with S3ClientPool(client_procs) as s3_pool, ClientPool(client_procs) as grpc_pool:
        pools: list[tuple[str, ClientPool, list[str]]] = [
            ("s3", s3_pool, cluster_s3), ("grpc", grpc_pool, cluster_grpc)]
        for path, pool, addrs in pools:
            pool.setup(addrs, clients)
            out[path] = {}
            try:
                for kind, verb in (("upload", "put"), ("download", "get")):
                    summary = pool.phase(kind, size, ops, max_s, f"{path}c{clients}").summary()
                    out[path][verb] = summary
                    progress(f"s3: {clients} clients x {size // KIB} KiB, {path} {verb}: {summary['ops_per_s']} ops/s, "
                             f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, errors {summary['errors']}")
            finally:
                pool.teardown()
    return out


def _timed_ops(op: Any, count: int, max_s: float) -> dict[str, Any]:
    """Runs op(i) for i < count, one after another, until `max_s` is over; ops/s and latencies."""
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + max_s
    t0 = time.monotonic()
    for i in range(count):
        if time.monotonic() >= deadline:
            break
        t = time.monotonic()
        try:
            op(i)
            latencies.append(time.monotonic() - t)
        except Exception as exc:  # noqa: BLE001 - counted and sampled
            errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
    wall = max(time.monotonic() - t0, 1e-9)
    lat_ms = [x * 1000 for x in latencies]
    return {"ops": len(latencies), "errors": len(errors), "error_samples": errors[:3],
            "ops_per_s": round(len(latencies) / wall, 1), "p50_ms": round(percentile(lat_ms, 50), 2),
            "p99_ms": round(percentile(lat_ms, 99), 2)}


def _single(s3: Any, grpc: DfsClient, size: int, count: int, max_s: float) -> dict[str, Any]:
    data = UniqueData(stream=0x5401, base_size=size)
    out: dict[str, Any] = {"size": size, "ops_per_phase": count}
    out["s3"] = {
        "put": _timed_ops(lambda i: s3.put_object(Bucket=BUCKET, Key=f"small/{i}", Body=data.piece(size)),
                          count, max_s),
        "get": _timed_ops(lambda i: s3.get_object(Bucket=BUCKET, Key=f"small/{i % count}")["Body"].read(),
                          count, max_s),
    }
    out["grpc"] = {
        "put": _timed_ops(lambda i: grpc.upload(data.piece(size), name=f"{BUCKET}/small-grpc/{i}"), count, max_s),
        "get": _timed_ops(lambda i: grpc.read(f"{BUCKET}/small-grpc/{i % count}"), count, max_s),
    }
    for path in ("s3", "grpc"):
        progress(f"s3: 1 client x {size // KIB} KiB, {path}: PUT {out[path]['put']['ops_per_s']} ops/s, "
                 f"GET {out[path]['get']['ops_per_s']} ops/s")
    return out


def _seed_listing(metadata: Path, keys: int) -> float:
    """Commits `keys` empty objects of LIST_BUCKET straight into the metadata store; returns the seconds."""
    t = time.perf_counter()
    store = SqliteStore(metadata)
    try:
        store.add_bucket(BucketRecord(LIST_BUCKET, time.time()))
        versions = [NewVersion(name=f"{LIST_BUCKET}/dir{i % 100:02d}/obj-{i:07d}", size=0, sha256=EMPTY_SHA256,
                               chunks=(), content_type="application/octet-stream",
                               metadata={"s3:etag": EMPTY_MD5}) for i in range(keys)]
        # Commits from many threads share transactions (the store's group commit).
        with ThreadPoolExecutor(64) as pool:
            for _ in pool.map(store.commit_version, versions, chunksize=64):
                pass
    finally:
        store.close()
    return time.perf_counter() - t


def _listing(s3: Any, pid: int, keys: int, seed_s: float) -> dict[str, Any]:
    before = rss_kib(pid)
    listed = pages = 0
    last = ""
    with RssSampler([pid], interval=0.05) as sampler:
        t = time.perf_counter()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=LIST_BUCKET,
                                                                 PaginationConfig={"PageSize": 1000}):
            pages += 1
            for item in page.get("Contents", []):
                if item["Key"] <= last:
                    raise RuntimeError(f"listing out of order: {item['Key']!r} after {last!r}")
                last = item["Key"]
                listed += 1
        seconds = time.perf_counter() - t
    if listed != keys:
        raise RuntimeError(f"ListObjectsV2 listed {listed} of {keys} keys")
    after = rss_kib(pid)
    result = {
        "keys": keys, "pages": pages, "page_size": 1000, "seed_s": round(seed_s, 1), "seconds": round(seconds, 2),
        "keys_per_s": round(listed / seconds, 0),
        "peer_rss_before_mib": round(before.get("VmRSS", 0) / 1024, 1),
        "peer_max_rss_mib": round(max(sampler.max_rss[pid], after.get("VmRSS", 0)) / 1024, 1),
        "peer_vmhwm_mib": round(after.get("VmHWM", 0) / 1024, 1),
    }
    progress(f"s3: ListObjectsV2 over {keys} keys: {result['keys_per_s']:.0f} keys/s; peer RSS "
             f"{result['peer_rss_before_mib']} MiB before, at most {result['peer_max_rss_mib']} MiB while listing")
    return result


def run(workdir: Path, quick: bool, client_procs: int = 2) -> dict[str, Any]:
    total = 32 * MIB if quick else 256 * MIB
    rounds = 1 if quick else 2
    list_keys = 10_000 if quick else 100_000
    clients, ops = (4, 5) if quick else (20, 50)
    small_count = 30 if quick else 300
    base = workdir / "cluster"
    base.mkdir(parents=True, exist_ok=True)
    progress(f"s3: committing {list_keys} empty objects into the metadata store for the listing")
    seed_s = _seed_listing(base / "metadata.db", list_keys)
    progress(f"s3: seeded in {seed_s:.1f} s; starting a 3-peer cluster (R=2)")
    cluster = start_cluster(base)
    try:
        endpoints = [f"http://{p.s3_addr}" for p in cluster.peers]
        grpc_addrs = [p.grpc_addr for p in cluster.peers]
        if not all(p.s3_addr for p in cluster.peers):
            raise RuntimeError("a peer serves no S3 endpoint")
        s3 = s3_client(endpoints[0], timeout=600)
        s3.create_bucket(Bucket=BUCKET)
        out: dict[str, Any] = {"peers": 3, "replicas": 2, "via": "peer0", "client": f"boto3 {boto3.__version__}"}
        # The listing runs first, on fresh peers, so its RSS is not that of earlier transfers.
        out["listing"] = _listing(s3, cluster.peers[0].pid, list_keys, seed_s)
        with DfsClient(grpc_addrs[0], timeout=600) as grpc:
            s3.put_object(Bucket=BUCKET, Key="warmup", Body=UniqueData(stream=0x5350).piece(MIB))
            s3.get_object(Bucket=BUCKET, Key="warmup")["Body"].read()
            grpc.upload(UniqueData(stream=0x5351).piece(MIB), name=f"{BUCKET}/warmup-grpc")
            grpc.read(f"{BUCKET}/warmup-grpc")
            out["large"] = _large(s3, grpc, total, rounds)
            out["single_client"] = _single(s3, grpc, 4 * KIB, small_count, 8.0)
        out["concurrent"] = _concurrent(endpoints, grpc_addrs, clients, 64 * KIB, ops, 15.0 if quick else 20.0,
                                        client_procs)
        out["peer_rss_kib"] = cluster.rss()
        return out
    finally:
        cluster.close()

