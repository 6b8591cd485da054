"""A pool of client worker processes, each running client threads with their own DfsClient (channel).

Why processes: the SDK is synchronous, and on 2 cores one Python process of 50-100 client threads
spends much of its time waiting for the GIL; two worker processes put the client load on both cores
the way independent clients would. Each phase reports the worker's own CPU use, so a client-side
bottleneck shows in the results. Workers are started with the spawn method (no forked gRPC state).

Protocol (over a Pipe): ("setup", addrs, client_ids, timeout) -> ("ok",); ("phase", spec) -> results;
("teardown",) -> ("ok",); ("exit",). Every phase is bounded by an op count per client and a deadline.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from client.sdk import DfsClient
from tests.bench.common import MIB, UniqueData, drain_download, percentile


@dataclass
class PhaseSpec:
    kind: str  # "upload" or "download"
    size: int
    ops: int
    start_at: float  # time.monotonic() (system-wide on Linux) at which every client begins
    deadline: float  # no new op starts after this
    tag: str


@dataclass
class PhaseResult:
    kind: str
    clients: int
    size: int
    ops_ok: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    first_start: float = 0.0
    last_end: float = 0.0
    bytes: int = 0
    worker_cpu_pct: list[float] = field(default_factory=list)
    hit_deadline: bool = False

    @property
    def wall_s(self) -> float:
        return max(self.last_end - self.first_start, 1e-9)

    def summary(self) -> dict[str, Any]:
        lat_ms = [x * 1000 for x in self.latencies]
        return {
            "kind": self.kind,
            "clients": self.clients,
            "size": self.size,
            "ops": self.ops_ok,
            "errors": self.errors,
            "error_samples": self.error_samples[:5],
            "wall_s": round(self.wall_s, 3),
            "ops_per_s": round(self.ops_ok / self.wall_s, 1),
            "mb_per_s": round(self.bytes / 1e6 / self.wall_s, 1),
            "p50_ms": round(percentile(lat_ms, 50), 2),
            "p99_ms": round(percentile(lat_ms, 99), 2),
            "max_ms": round(max(lat_ms), 2) if lat_ms else 0.0,
            "client_worker_cpu_pct": self.worker_cpu_pct,
            "hit_deadline": self.hit_deadline,
        }


# ------------------------------------------------------------------------------ worker process


class _Worker:
    def __init__(self) -> None:
        self.clients: dict[int, DfsClient] = {}
        self.names: dict[int, list[str]] = {}
        self.data: dict[int, UniqueData] = {}

    def setup(self, addrs: list[str], client_ids: list[int], timeout: float) -> None:
        self.teardown()
        for cid in client_ids:
            client = DfsClient(addrs[cid % len(addrs)], timeout=timeout)
            client.status()  # connects the channel before any timed op
            self.clients[cid] = client
            self.names[cid] = []
            self.data[cid] = UniqueData(stream=(os.getpid() << 20) + cid, base_size=MIB)

    def teardown(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()
        self.names.clear()
        self.data.clear()

    def phase(self, spec: PhaseSpec) -> dict[str, Any]:
        results: dict[int, dict[str, Any]] = {}
        threads = [
            threading.Thread(target=self._client_loop, args=(cid, spec, results), name=f"client-{cid}")
            for cid in self.clients
        ]
        cpu0 = os.times()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu1 = os.times()
        wall = max(time.monotonic() - spec.start_at, 1e-9)
        cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        merged: dict[str, Any] = {
            "latencies": [], "errors": 0, "error_samples": [], "bytes": 0, "hit_deadline": False,
            "first_start": min((r["first_start"] for r in results.values() if r["first_start"]), default=0.0),
            "last_end": max((r["last_end"] for r in results.values()), default=0.0),
            "cpu_pct": round(100 * cpu / wall, 1),
        }
        for r in results.values():
            merged["latencies"] += r["latencies"]
            merged["errors"] += r["errors"]
            merged["error_samples"] += r["error_samples"][:2]
            merged["bytes"] += r["bytes"]
            merged["hit_deadline"] |= r["hit_deadline"]
        return merged

    def _client_loop(self, cid: int, spec: PhaseSpec, out: dict[int, dict[str, Any]]) -> None:
        client, data, names = self.clients[cid], self.data[cid], self.names[cid]
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
                    name = f"bench/{spec.tag}/c{cid}/{i}"
                    source: Any = data.piece(spec.size) if spec.size <= MIB else data.pieces(spec.size, MIB)
                    client.upload(source, name=name)
                    names.append(name)
                    nbytes += spec.size
                else:
                    received, _ = drain_download(client, download_names[i % len(download_names)])
                    nbytes += received
                latencies.append(time.monotonic() - t)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and sampled
                errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            last_end = time.monotonic()
        out[cid] = {
            "latencies": latencies, "errors": len(errors), "error_samples": errors[:2], "bytes": nbytes,
            "first_start": first_start, "last_end": last_end, "hit_deadline": hit_deadline,
        }


def worker_main(conn: Connection) -> None:
    worker = _Worker()
    try:
        while True:
            msg = conn.recv()
            op = msg[0]
            if op == "setup":
                worker.setup(msg[1], msg[2], msg[3])
                conn.send(("ok",))
            elif op == "phase":
                conn.send(("result", worker.phase(msg[1])))
            elif op == "teardown":
                worker.teardown()
                conn.send(("ok",))
            else:
                return
    except (EOFError, KeyboardInterrupt):
        return
    finally:
        worker.teardown()


# ------------------------------------------------------------------------------ parent side


class ClientPool:
    """`procs` worker processes; clients are dealt round-robin to workers and to peers."""

    def __init__(self, procs: int = 2) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for i in range(procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child,), name=f"bench-clients-{i}", daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self.clients = 0

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def _call_all(self, msgs: list[tuple[Any, ...]], timeout: float) -> list[Any]:
        for conn, msg in zip(self._conns, msgs, strict=True):
            conn.send(msg)
        replies = []
        deadline = time.monotonic() + timeout
        for conn, proc in zip(self._conns, self._procs, strict=True):
            while not conn.poll(0.2):
                if not proc.is_alive():
                    raise RuntimeError(f"client worker {proc.name} died with exit code {proc.exitcode}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"client worker {proc.name} did not answer within {timeout:.0f} s")
            replies.append(conn.recv())
        return replies

    def setup(self, addrs: list[str], clients: int, timeout: float = 120.0) -> None:
        n = len(self._conns)
        self._call_all([("setup", addrs, list(range(w, clients, n)), timeout) for w in range(n)], 60)
        self.clients = clients

    def phase(self, kind: str, size: int, ops: int, max_s: float, tag: str) -> PhaseResult:
        start = time.monotonic() + 0.3
        spec = PhaseSpec(kind, size, ops, start, start + max_s, tag)
        # Past the deadline each client finishes only the op it is in; allow for that op's timeout.
        replies = self._call_all([("phase", spec)] * len(self._conns), max_s + 150)
        result = PhaseResult(kind, self.clients, size)
        starts = []
        for _, r in replies:
            result.latencies += r["latencies"]
            result.errors += r["errors"]
            result.error_samples += r["error_samples"]
            result.bytes += r["bytes"]
            result.hit_deadline |= r["hit_deadline"]
            result.worker_cpu_pct.append(r["cpu_pct"])
            if r["first_start"]:
                starts.append(r["first_start"])
            result.last_end = max(result.last_end, r["last_end"])
        result.ops_ok = len(result.latencies)
        result.first_start = min(starts, default=start)
        return result

    def teardown(self) -> None:
        self._call_all([("teardown",)] * len(self._conns), 60)

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(("exit",))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for conn in self._conns:
            conn.close()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
