"""Where the whole machine's CPU goes during a large transfer (not part of `make bench`).

    apt-get install linux-perf        # Debian; `perf` on the PATH
    .venv/bin/python -m tests.bench.cpu_split large-upload [--seconds 6]
    .venv/bin/python -m tests.bench.cpu_split large-download

Starts a 3-peer cluster (R=2, default settings), repeats 256 MiB uploads (or downloads of one 256 MiB
file) through peer0 from this process while `perf record -a` samples every CPU, then prints the
throughput, the machine's user/system/idle split from /proc/stat, and the share of samples per
shared object: libcrypto is SHA-256, libc mostly memcpy, libpython the interpreter, cygrpc gRPC's
core, the kernel copies, TCP over loopback, disk I/O, scheduling. py-spy (`profile_peers`) shows the
Python side of one peer; this shows what the two cores spend per byte, all processes together.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from client.sdk import DfsClient
from tests.bench.common import MIB, UniqueData, drain_download, kill_all, mb_per_s, start_cluster

SIZE = 256 * MIB


def _cpu_times() -> list[int]:
    with open("/proc/stat") as fh:
        return [int(x) for x in fh.readline().split()[1:8]]  # user nice system idle iowait irq softirq


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.cpu_split", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["large-upload", "large-download"])
    parser.add_argument("--seconds", type=float, default=6.0, help="how long perf samples (default 6)")
    args = parser.parse_args(argv)
    if shutil.which("perf") is None:
        parser.error("perf is not installed (Debian: apt-get install linux-perf)")
    work = Path(tempfile.mkdtemp(prefix="dfs-cpu-split-"))
    cluster = start_cluster(work / "cluster")
    try:
        with DfsClient(cluster.peers[0].grpc_addr, timeout=600) as client:
            data = UniqueData(stream=0x5C)
            client.upload(data.pieces(SIZE), name="split/seed")
            record = subprocess.Popen(
                ["perf", "record", "-a", "-F", "499", "-o", str(work / "perf.data"), "--", "sleep", str(args.seconds)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            before, start, moved = _cpu_times(), time.perf_counter(), 0
            while record.poll() is None:
                if args.scenario == "large-upload":
                    client.upload(data.pieces(SIZE), name="split/upload")
                else:
                    drain_download(client, "split/seed")
                moved += SIZE
            seconds, after = time.perf_counter() - start, _cpu_times()
        report = subprocess.run(
            ["perf", "report", "-i", str(work / "perf.data"), "--sort", "dso", "-g", "none", "-q", "--stdio"],
            capture_output=True, text=True, check=True).stdout
    finally:
        cluster.close()
        kill_all()
    delta = [b - a for a, b in zip(before, after, strict=True)]
    names = ["user", "nice", "system", "idle", "iowait", "irq", "softirq"]
    split = ", ".join(f"{n} {d / sum(delta) * 200:.0f}%" for n, d in zip(names, delta, strict=True) if d)
    print(f"{args.scenario}: {mb_per_s(moved, seconds):.0f} MB/s over {seconds:.1f} s; machine (of 200%): {split}")
    print("samples by shared object (all CPUs, idle included):")
    for line in report.splitlines()[:12]:
        print("  " + line.strip())
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
