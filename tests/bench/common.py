"""Shared pieces of the benchmark: progress output, process bookkeeping, peer clusters, data, RSS.

Peers started here use the peer's default gossip settings (0.5 s interval, suspect 3 s, dead 6 s),
not the fast test profile of tests/cluster.py. Every child process is registered, so `kill_all()`
(run from finally blocks, atexit and signal handlers) can SIGKILL whatever is still running.
"""

from __future__ import annotations

import os
import platform
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from client.sdk import DfsClient
from tests.cluster import Cluster, PeerProc

KIB = 1024
MIB = 1024 * 1024
GIB = 1024 * MIB


_T0 = time.monotonic()
_children: list[subprocess.Popen[bytes]] = []
_children_lock = threading.Lock()


def progress(message: str) -> None:
    """One progress line on stderr, stamped with the seconds since the bench started."""
    print(f"[bench {time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def elapsed() -> float:
    return time.monotonic() - _T0


def mb_per_s(nbytes: int, seconds: float) -> float:
    """Throughput in MB/s (10^6 bytes per second), the unit the reference figures use."""
    return nbytes / 1e6 / seconds if seconds > 0 else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


# ------------------------------------------------------------------------------------ processes


def register(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    with _children_lock:
        _children.append(proc)
    return proc


def kill_all() -> None:
    """SIGKILLs every registered child still running (each by its own pid) and reaps it."""
    with _children_lock:
        procs = list(_children)
        _children.clear()
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            except ProcessLookupError:
                pass
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


def rss_kib(pid: int) -> dict[str, int]:
    """VmHWM (peak) and VmRSS (current) of `pid` in KiB, read from /proc/PID/status."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds `pid` has used so far (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by a set of processes between start() and stop(): `result` as % of one core per pid,
    `seconds` as CPU seconds per pid, over `wall` seconds."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self._start: list[float] = []
        self._t0 = 0.0
        self.result: list[float] = []
        self.seconds: list[float] = []
        self.wall = 0.0

    @staticmethod
    def _cpu(pid: int) -> float:
        # This process on its own nanosecond clock; others from /proc (10 ms ticks each).
        return time.process_time() if pid == os.getpid() else cpu_seconds(pid)

    def __enter__(self) -> CpuMeter:
        self._start = [self._cpu(p) for p in self.pids]
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = self.wall = max(time.monotonic() - self._t0, 1e-9)
        used = self.seconds = [self._cpu(p) - s for p, s in zip(self.pids, self._start, strict=True)]
        self.result = [round(100 * u / wall, 1) for u in used]

    def ms_per_mib(self, nbytes: int) -> float:
        """CPU milliseconds all the processes together spent per MiB of `nbytes` moved."""
        return 1000 * sum(self.seconds) / (nbytes / MIB) if nbytes else 0.0


def _system_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, from /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _group_cpu() -> dict[int, float]:
    """CPU seconds of every live process in this process group (the bench and all it started)."""
    pgid = os.getpgid(0)
    out: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


class LoadMonitor:
    """How busy the machine was during a section, and how much of that was NOT this benchmark.

    Samples /proc every `interval` s: whole-machine busy time, and the CPU time of every process in
    the bench's process group (peers, client workers, servers). Other processes on a shared machine
    distort every figure, so each section reports them.
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-monitor", daemon=True)
        self._started = False
        self.result: dict[str, float] = {}

    def _sample(self) -> None:
        for pid, cpu in _group_cpu().items():
            self._first.setdefault(pid, 0.0 if self._started else cpu)
            self._last[pid] = cpu

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> LoadMonitor:
        self._sample()
        self._started = True
        self._busy0 = _system_busy_s()
        self._t0 = time.monotonic()
        self._load0 = os.getloadavg()[0]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()
        wall = max(time.monotonic() - self._t0, 1e-9)
        busy = _system_busy_s() - self._busy0
        ours = sum(self._last[p] - self._first[p] for p in self._last)
        self.result = {
            "wall_s": round(wall, 1),
            "machine_busy_pct": round(100 * busy / wall, 1),
            "bench_pct": round(100 * ours / wall, 1),
            "other_processes_pct": round(max(0.0, 100 * (busy - ours) / wall), 1),
            "cores": os.cpu_count() or 0,
            "loadavg_1m_start": round(self._load0, 2),
            "loadavg_1m_end": round(os.getloadavg()[0], 2),
        }


def other_cpu_pct(window: float = 1.0) -> float:
    """CPU % (100 = one core) used over `window` s by processes outside the bench's process group."""
    ours0, busy0, t0 = _group_cpu(), _system_busy_s(), time.monotonic()
    time.sleep(window)
    ours1, busy1 = _group_cpu(), _system_busy_s()
    wall = max(time.monotonic() - t0, 1e-9)
    ours = sum(cpu - ours0.get(pid, 0.0) for pid, cpu in ours1.items())
    return max(0.0, 100 * ((busy1 - busy0) - ours) / wall)


def wait_for_quiet(max_wait: float, threshold_pct: float = 50.0) -> dict[str, float]:
    """Waits (at most `max_wait` s) until other processes use under `threshold_pct` of a core."""
    t0 = time.monotonic()
    other = other_cpu_pct()
    while other >= threshold_pct and time.monotonic() - t0 < max_wait:
        progress(f"machine busy: other processes use {other:.0f}% of a core; waiting for a quieter moment")
        time.sleep(1.0)
        other = other_cpu_pct(2.0)
    return {"waited_s": round(time.monotonic() - t0, 1), "other_processes_pct_at_start": round(other, 1)}


# ------------------------------------------------------------------------------------- clusters


class BenchPeer(PeerProc):
    """A `python -m peer serve` process with the default gossip settings (no fast test profile)."""

    profile: tuple[str, ...] = ()

    def spawn(self, args: list[str], log: IO[bytes], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.started_at = time.monotonic()
        return register(super().spawn(args, log, env))

    def start(self, seeds: Sequence[str] = (), env: dict[str, str] | None = None) -> BenchPeer:
        super().start(seeds, env)
        self.ready_at = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class BenchCluster(Cluster):
    """tests.cluster.Cluster whose peers run with default settings; `close()` SIGKILLs them all."""

    peers: list[BenchPeer]  # type: ignore[assignment]

    def add_peer(self, env: dict[str, str] | None = None) -> BenchPeer:
        peer = BenchPeer(self.base, len(self.peers), self.metadata, self.replicas, self.extra)
        seeds = [p.gossip_addr for p in self.live()][:2]
        self.peers.append(peer)
        peer.start(seeds, env)
        return peer

    def start(self, n: int, converge_timeout: float = 30.0) -> BenchCluster:
        for _ in range(n):
            self.add_peer()
        self.wait_converged(converge_timeout)
        return self

    def rss(self) -> list[dict[str, int]]:
        return [rss_kib(p.pid) for p in self.peers if p.proc is not None]


def start_cluster(base: Path, n: int = 3, replicas: int = 2, extra: Sequence[str] = ()) -> BenchCluster:
    """A converged cluster of `n` default-settings peers; `extra` adds `serve` flags to every peer."""
    base.mkdir(parents=True, exist_ok=True)
    cluster = BenchCluster(base, replicas=replicas, extra=extra)
    try:
        return cluster.start(n)
    except BaseException:
        cluster.close()
        raise


# ----------------------------------------------------------------------------------------- data


class UniqueData:
    """Pieces of pseudo-random bytes that are all different (content addressing would dedupe repeats).

    One random base buffer; each piece overwrites its first 24 bytes with (stream, index, nonce), so
    producing a 1 MiB piece costs one copy, not a random-number generation.
    """

    _TAG = struct.Struct(">QQQ")

    def __init__(self, stream: int, base_size: int = MIB) -> None:
        self.stream = stream
        self.base = os.urandom(base_size)
        self.nonce = int.from_bytes(os.urandom(8), "big")
        self.count = 0

    def piece(self, size: int) -> bytes:
        if size > len(self.base):
            raise ValueError("piece larger than the base buffer")
        self.count += 1
        tag = self._TAG.pack(self.stream, self.count, self.nonce)
        if size <= len(tag):
            return tag[:size]
        return b"".join((tag, memoryview(self.base)[len(tag):size]))  # one copy, not two

    def pieces(self, total: int, piece_size: int = MIB) -> Iterator[bytes]:
        """`total` bytes as pieces of `piece_size`."""
        left = total
        while left > 0:
            piece = self.piece(min(piece_size, left))
            left -= len(piece)
            yield piece


def drain_download(client: DfsClient, name: str) -> tuple[int, str]:
    """Downloads the whole of `name` without keeping it; returns (bytes received, SHA-256 they hash to).

    The SDK hashes every received chunk against its id and checks that the chunks tile the version
    (or, from a peer without chunk markers, the whole file's SHA-256), raising IntegrityError
    otherwise; so the returned digest is the version's verified value (the bench does not hash the
    data a second time, which would add client CPU the product does not spend).
    """
    received = 0
    with client.iter_download(name) as stream:
        if not stream.is_whole_file:
            raise RuntimeError(f"{name}: expected a whole-file download")
        for piece in stream:
            received += len(piece)
    return received, stream.info.sha256


# -------------------------------------------------------------------------------------- machine


def machine_info() -> dict[str, object]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    import grpc

    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / (1024 * 1024), 2),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "grpcio": grpc.__version__,
    }
