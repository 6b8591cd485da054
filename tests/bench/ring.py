"""Section 4, the hash ring in-process: owners(key, 2) ns/op and build time, 150 vnodes per peer.

Keys are pre-generated chunk ids (64 hex characters, like real chunk ids). The owner table for r=2 is
built by a warm-up call and timed separately ("first lookup"); lookups are then timed as the best
of several passes over all keys, loop overhead included, in thread CPU time (the figure the target
is checked on) and in wall time.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from typing import Any

from peer.ring.hashring import HashRing
from tests.bench.common import progress

VNODES = 150


def _lookup_ns(ring: HashRing, keys: list[str], passes: int) -> tuple[list[float], list[float]]:
    """(wall ns/op, CPU ns/op) of each pass. CPU time (this thread's) is what a lookup costs; wall time
    also counts moments the thread was not scheduled, which on a busy machine inflates it."""
    owners = ring.owners
    wall, cpu = [], []
    for _ in range(passes):
        c = time.thread_time_ns()
        t = time.perf_counter_ns()
        for key in keys:
            owners(key, 2)
        wall.append((time.perf_counter_ns() - t) / len(keys))
        cpu.append((time.thread_time_ns() - c) / len(keys))
    return wall, cpu


def run(quick: bool) -> dict[str, Any]:
    n_keys = 20_000 if quick else 100_000
    passes = 2 if quick else 5
    keys = [os.urandom(32).hex() for _ in range(n_keys)]
    out: dict[str, Any] = {"vnodes": VNODES, "keys": n_keys, "r": 2, "passes": passes}
    for peers in (3, 100):
        ids = [uuid.uuid4().hex for _ in range(peers)]
        builds = []
        for _ in range(1 if quick else 3):
            t = time.perf_counter()
            ring = HashRing.build(ids, VNODES)
            builds.append(time.perf_counter() - t)
        t = time.perf_counter()
        ring.owners(keys[0], 2)
        first = time.perf_counter() - t
        wall, cpu = _lookup_ns(ring, keys, passes)
        out[f"peers_{peers}"] = {
            "points": peers * VNODES,
            "build_ms": round(min(builds) * 1000, 2),
            "first_lookup_ms": round(first * 1000, 2),
            "lookup_ns_best": round(min(cpu), 1),
            "lookup_ns_median": round(statistics.median(cpu), 1),
            "lookup_wall_ns_best": round(min(wall), 1),
            "lookup_wall_ns_median": round(statistics.median(wall), 1),
        }
        progress(f"ring: {peers} peers: lookup {min(cpu):.0f} ns/op CPU time, {min(wall):.0f} ns/op wall "
                 f"(best of {passes}), build {min(builds) * 1000:.1f} ms, first lookup (owner table) "
                 f"{first * 1000:.1f} ms")
    return out
