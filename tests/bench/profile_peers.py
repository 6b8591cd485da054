"""Profile the peers under one bench workload with py-spy (not part of `make bench`).

    .venv/bin/pip install py-spy
    .venv/bin/python -m tests.bench.profile_peers SCENARIO [--duration 15] [--out DIR] [--idle] [--native]
        [--peer-flags "--no-metrics --no-access-log"]

Starts a fresh 3-peer cluster (R=2, default settings), runs SCENARIO in a loop while `py-spy record`
samples every peer for --duration seconds, then prints the hottest functions per peer (self and
inclusive share of samples) and writes the collapsed stacks (*.txt, flamegraph.pl input) to --out.
--idle also samples threads that are waiting, which shows where latency goes when the CPU is not busy.

Scenarios: large-upload, large-download (256 MiB, one client via peer0), small-upload,
small-download (20 clients x 64 KiB), many-uploads (50 clients x 16 MiB).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from client.sdk import DfsClient
from tests.bench.clients import ClientPool
from tests.bench.common import KIB, MIB, UniqueData, drain_download, kill_all, progress, register, start_cluster

SCENARIOS = ["large-upload", "large-download", "small-upload", "small-download", "many-uploads"]


def _workload(scenario: str, addrs: list[str], steady: threading.Event, stop: threading.Event,
              max_s: float) -> None:
    """Runs the scenario repeatedly until `stop` is set or `max_s` passes (each step is bounded too);
    sets `steady` once any seeding is done and the measured operation runs."""
    deadline = time.monotonic() + max_s
    if scenario.startswith("large"):
        with DfsClient(addrs[0], timeout=300) as client:
            data = UniqueData(stream=0x9F)
            client.upload(data.pieces(256 * MIB), name="profile/large/0")
            steady.set()
            for i in range(1000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                if scenario == "large-upload":
                    client.upload(data.pieces(256 * MIB), name=f"profile/large/{i + 1}")
                else:
                    drain_download(client, "profile/large/0")
        return
    clients, size, ops = (50, 16 * MIB, 1) if scenario == "many-uploads" else (20, 64 * KIB, 50)
    with ClientPool(2) as pool:
        pool.setup(addrs, clients)
        if scenario == "small-download":
            pool.phase("upload", size, ops, 60, "profile-seed")
        steady.set()
        for i in range(1000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            kind = "download" if scenario == "small-download" else "upload"
            pool.phase(kind, size, ops, 30, f"profile{i}")


def _function(frame: str) -> str:
    """`name (file:line)` -> `name (file)`, so inclusive time adds up per function, not per line."""
    return re.sub(r":\d+\)$", ")", frame)


def summarize(collapsed: Path, top: int) -> str:
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        self_counts[frames[-1]] += n
        for frame in {_function(f) for f in frames}:
            incl_counts[frame] += n
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples", "  top self:"]
    lines += [f"    {100 * c / total:5.1f}%  {f}" for f, c in self_counts.most_common(top)]
    lines.append("  top inclusive by function, dfs code only (peer/, client/, proto/):")
    ours = [(f, c) for f, c in incl_counts.most_common() if any(f"({d}/" in f for d in ("peer", "client", "proto"))]
    lines += [f"    {100 * c / total:5.1f}%  {f}" for f, c in ours[:top]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.profile_peers")
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "dfs-bench-profiles"))
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--idle", action="store_true", help="also sample waiting threads")
    parser.add_argument("--native", action="store_true", help="include native (C/C++) frames")
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL (Python CPU time)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--peer-flags", default="", help="extra `serve` flags of every peer, space-separated")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dfs-profile-"))
    cluster = None
    try:
        cluster = start_cluster(work / "cluster", extra=args.peer_flags.split())
        addrs = [p.grpc_addr for p in cluster.peers]
        stop, steady = threading.Event(), threading.Event()
        worker = threading.Thread(target=_workload, args=(args.scenario, addrs, steady, stop, args.duration + 180))
        worker.start()
        if not steady.wait(120):
            raise RuntimeError("the workload did not get going within 120 s")
        time.sleep(2)  # let the first operations of the steady loop start
        progress(f"sampling {len(cluster.peers)} peers for {args.duration} s ({args.scenario})")
        spies = []
        for peer in cluster.peers:
            cmd = [py_spy, "record", "--pid", str(peer.pid), "--duration", str(args.duration),
                   "--rate", str(args.rate), "--format", "raw",
                   "-o", str(out / f"{args.scenario}-peer{peer.index}.txt")]
            if args.idle:
                cmd.append("--idle")
            # --native needs to pause the process for each sample; plain sampling does not.
            cmd.append("--native" if args.native else "--nonblocking")
            if args.gil:
                cmd.append("--gil")
            spies.append(register(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        for spy in spies:
            spy.wait(args.duration + 60)
        stop.set()
        worker.join(180)
        for peer in cluster.peers:
            path = out / f"{args.scenario}-peer{peer.index}.txt"
            print(f"== peer{peer.index} ({args.scenario}{', idle included' if args.idle else ''}): {path}")
            print(summarize(path, args.top) if path.exists() else "  (no profile)")
    finally:
        if cluster is not None:
            cluster.close()
        kill_all()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
