"""Chaos run: real peers under client load while peers crash, pause, rot on disk, leave and join.

`run_chaos(base_dir, cfg)` starts `cfg.peers` `dfs-peer serve` processes (tests/cluster.py) with fast
repair settings and the run's redundancy policy as the cluster's default (`--default-policy`), so
every upload, and every repair, goes through that policy: `rep:R` (R copies of each chunk on its R
owners) or `ec:K+M` (K + M fragments of each chunk, fragment i on owner i). Client threads upload and
download through random live peers, and a fault injector driven by a seeded RNG hits the cluster.
A piece is a copy or a fragment; the policy's parity P (R-1 copies, M fragments) is how many pieces
of a chunk may be gone at once. Two budgets of P slots each keep the faults within that. "down": at
most P peers are down at once (killed until restarted and seen alive, paused until resumed and seen
alive, leaving until its process exited). "loss": at most P faults that destroy pieces are unhealed
at once (a corrupted copy or fragment file until every piece it stood for is intact on its owners
again; a leave until every piece the leaver held is). So a corruption may hit a chunk whose other
pieces sit on a killed peer (unavailable for a while, never lost), but never take the last pieces a
chunk needs after the leaver took some away. A join takes nothing away and needs no slot.

What must hold, and is checked:
- no upload or download ever yields bytes other than the ones acknowledged, even during faults (an
  error during faults is counted, not failed; an upload that raised is simply not acknowledged);
- at the end, every acknowledged version is listed with its SHA-256 and downloads byte-identical;
- within `replication_bound_s` of the end of the last fault, the cluster is fully redundant: every
  chunk of every live version has its R intact copies on its current owners, or each of its fragments
  intact on its owner (fragment i on owner i, from the version records), and no live peer holds a
  corrupt piece (tests/redundancy.py);
- from start to end, every running peer's GET /metrics, scraped each second, parses, has the core
  families, and no counter of a peer process goes backwards (tests/scraper.py).

`python -m tests.chaos [--long] [--seed N] [--duration S] [--peers N] [--replicas R] [--policy P]` runs
it from the command line and prints the same summary block; the exit code is 0 only when every check
held.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from client import DfsClientError, IntegrityError, NotFoundError
from peer.ring.hashring import HashRing
from peer.ring.policy import InvalidPolicy, Policy
from tests.cluster import Cluster, PeerProc, wait_for
from tests.redundancy import Stored, expected_holders, redundancy_report, referenced_stored, short_ring, stored_of
from tests.replication import Report, ring_of
from tests.scraper import MetricsScraper, ScrapeStats

KIB = 1024
MIB = 1024 * KIB
CHUNK_SIZE = MIB  # the peers' default --chunk-size; shared-chunk uploads align to it

Segment = tuple[int, int, int]
"""(seed, length generated, bytes kept from its start): a piece of file content, rebuilt on demand."""


@dataclass(frozen=True)
class ChaosConfig:
    peers: int = 5
    replicas: int = 2
    policy: str = ""
    """The cluster's redundancy policy (`rep:R` or `ec:K+M`), set on every peer with --default-policy
    so that clients name none; "" is `rep:{replicas}`."""
    duration_s: float = 75.0
    """Seconds of client load with faults; then faults and clients stop and the checks run."""
    clients: int = 3
    min_size: int = MIB // 2
    max_size: int = 3 * MIB
    small_ratio: float = 0.1
    """Share of new files that are small (1 byte to 64 KiB) instead of min_size..max_size."""
    fault_interval_s: float = 3.0
    """Mean seconds between two fault starts (each gap is 0.5x to 1.5x this)."""
    seed: int = 1
    leaves: int = 1
    """Peers that leave for good (SIGTERM) during the run."""
    joins: int = 1
    """New peers that join during the run."""
    replication_bound_s: float = 60.0
    """Full redundancy (every piece intact on its owners) must hold within this many seconds after the
    last fault ended."""
    max_versions: int = 400
    """Acknowledged versions at most, spread evenly over the run (bounds disk use); clients download
    instead of uploading while they are ahead of that pace."""
    scrub_rate: float = 0.0
    """--scrub-rate of every peer in bytes/s; 0 means unlimited."""
    request_timeout_s: float = 30.0
    """Client deadline of one upload or download."""
    op_pause_s: float = 0.2
    """Each client waits up to this long between two operations."""

    @property
    def redundancy(self) -> Policy:
        return Policy.parse(self.policy or f"rep:{self.replicas}")

    @property
    def parity(self) -> int:
        """Pieces of a chunk that may be gone at once: the size of each fault budget."""
        return self.redundancy.parity

    def validate(self) -> ChaosConfig:
        try:
            policy = self.redundancy
        except InvalidPolicy as exc:
            raise ValueError(str(exc)) from exc
        if policy.parity < 1:
            raise ValueError(f"chaos needs a policy with parity >= 1: under {policy} no fault may take a piece away")
        if self.peers <= policy.width:
            raise ValueError(f"peers must exceed the width of {policy} ({policy.width}), or taking any peer down "
                             "would stop every write")
        if self.peers - self.leaves < policy.width:
            raise ValueError(f"peers - leaves must be at least the width of {policy} ({policy.width}), or the ring "
                             "could not place every piece once the leavers are gone")
        if not 0 < self.min_size <= self.max_size:
            raise ValueError("need 0 < min_size <= max_size")
        return self

    def peer_flags(self) -> list[str]:
        """Fast self-healing, added after the FAST gossip profile of tests/cluster.py (later flags win)."""
        return [
            "--default-policy", str(self.redundancy),
            "--repair-interval", "0.3",
            "--scrub-interval", "1",
            "--scrub-rate", str(self.scrub_rate),
            "--gc-interval", "2",
            "--gc-grace", "30",
            "--dead-grace", "3",
        ]


BUDGETS: dict[str, tuple[str, ...]] = {
    "kill": ("down",), "pause": ("down",), "leave": ("down", "loss"), "corrupt": ("loss",), "join": (),
}
"""The slots each kind of fault holds (see the module docstring)."""

DEFAULT = ChaosConfig()
LONG = ChaosConfig(peers=8, replicas=3, duration_s=420.0, clients=4, max_size=5 * MIB, fault_interval_s=4.0,
                   leaves=2, joins=2, max_versions=1200, replication_bound_s=120.0, scrub_rate=64 * MIB)


@dataclass(frozen=True)
class Acked:
    """A version the cluster acknowledged: what must download byte-identical at the end."""

    name: str
    version: int
    sha256: str
    size: int
    stored: tuple[Stored, ...]
    """Its chunks as the upload's answer placed them: a copied chunk, or its fragment ids."""
    recipe: tuple[Segment, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        """The files holding this version on the peers' disks (chunk or fragment ids)."""
        return tuple(i for s in self.stored for i in s.ids)


@dataclass
class ChaosResult:
    cfg: ChaosConfig
    counts: Counter[str] = field(default_factory=Counter)
    """uploads_*, downloads_* and final_* figures."""
    faults: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Observations that are not failures (errors during faults by kind, exit codes)."""
    chunks: int = 0
    pieces: int = 0
    """Distinct stored ids of the live versions at the end: copied chunks and fragments."""
    misplaced_after: int = -1
    quarantined: int = 0
    time_to_full_replication_s: float | None = None
    scrapes: ScrapeStats = field(default_factory=ScrapeStats)
    """What the scraper of every peer's GET /metrics saw."""
    runtime_s: float = 0.0
    logs: str = ""
    """Tails of the peers' logs, kept when the run failed."""

    @property
    def ok(self) -> bool:
        return not self.failures

    def replication_figure(self) -> str:
        bound = f"bound {self.cfg.replication_bound_s:g} s"
        if self.time_to_full_replication_s is None:
            return f"NOT reached within the {bound}"
        policy = self.cfg.redundancy
        if policy.erasure_coded:
            held = (f"{self.chunks} chunks as {self.pieces} fragments ({policy}), each intact on its owner; "
                    f"{self.misplaced_after} extra fragments left on non-owners")
        else:
            held = (f"{self.chunks} chunks, each with R={policy.width} intact copies on its owners; "
                    f"{self.misplaced_after} extra copies left on non-owners")
        return f"{self.time_to_full_replication_s:.1f} s after the last fault ({bound}); {held}"

    def summary(self) -> str:
        c, cfg = self.counts, self.cfg
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))
        lines = [
            f"chaos run: seed {cfg.seed}, {cfg.peers} peers, {cfg.redundancy}, {cfg.duration_s:g} s of faults, "
            f"{cfg.clients} clients",
            f"  versions written       : {c['uploads_attempted']} attempted, {c['uploads_acked']} acknowledged "
            f"({c['acked_new_version']} new versions of a name, {c['acked_shared']} sharing chunks), "
            f"{c['uploads_failed']} failed (not acknowledged)",
            f"  downloads during chaos : {c['downloads_ok']} ok, {c['downloads_failed']} failed during faults",
            f"  faults injected        : {sum(self.faults.values())} ({kinds})",
            f"  corrupt pieces         : {self.faults['corrupt']} injected, {self.quarantined} quarantined on disk",
            f"  final downloads        : {c['final_ok']}/{c['uploads_acked']} acknowledged versions byte-identical, "
            f"{c['final_missing']} missing, {c['final_wrong']} wrong, {c['final_error']} errors",
            f"  time to full replication: {self.replication_figure()}",
            f"  metrics scrapes        : {self.scrapes.describe()}",
            f"  total runtime          : {self.runtime_s:.1f} s",
            f"  result                 : {'PASS' if self.ok else 'FAIL'}",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  FAILURE: {f}" for f in self.failures]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ content


def materialize(recipe: Iterable[Segment]) -> bytes:
    return b"".join(random.Random(seed).randbytes(length)[:keep] for seed, length, keep in recipe)


def recipe_prefix(recipe: Iterable[Segment], length: int) -> list[Segment]:
    """The segments of the first `length` bytes of `recipe`'s content."""
    out: list[Segment] = []
    for seed, generated, keep in recipe:
        if length <= 0:
            break
        out.append((seed, generated, min(keep, length)))
        length -= keep
    return out


def chunk_ids_of(data: bytes) -> tuple[str, ...]:
    return tuple(hashlib.sha256(data[i : i + CHUNK_SIZE]).hexdigest() for i in range(0, len(data), CHUNK_SIZE))


class CopyCheck:
    """Is a chunk file intact? Cached per (inode, mtime, size), so polls re-hash only what changed."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, int, int], bool]] = {}
        self._lock = threading.Lock()

    def state(self, path: Path, chunk_id: str) -> bool | None:
        """True intact, False corrupt, None no file (as tests/replication.py `intact`)."""
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
                with self._lock:
                    hit = self._cache.get(str(path))
                if hit is not None and hit[0] == key:
                    return hit[1]
                ok = hashlib.sha256(fh.read()).hexdigest() == chunk_id
        except FileNotFoundError:
            return None
        with self._lock:
            self._cache[str(path)] = (key, ok)
        return ok


# ------------------------------------------------------------------------------------------ the run


class ChaosRun:
    def __init__(self, base_dir: Path, cfg: ChaosConfig) -> None:
        self.cfg = cfg.validate()
        self.cluster = Cluster(base_dir, replicas=cfg.replicas, extra=cfg.peer_flags())
        self.result = ChaosResult(cfg)
        self.lock = threading.Lock()
        self.acked: list[Acked] = []
        self.names: list[str] = []
        self.chaos_over = threading.Event()
        """Set when the chaos phase ends (its duration passed, or a failure stopped it early)."""
        self.copies = CopyCheck()
        # Fault bookkeeping, under self.lock.
        self.slots_used: Counter[str] = Counter()  # per budget: "down" and "loss"
        self.down: set[int] = set()  # peer indexes clients must not use: killed, paused, leaving
        self.gone: set[int] = set()  # peers that left for good
        self.last_fault_end = 0.0
        self.fault_threads: list[threading.Thread] = []
        self.errors: Counter[str] = Counter()
        self.started = time.monotonic()

    # ---------------------------------------------------------------- bookkeeping

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.result.counts[key] += n

    def fail(self, message: str) -> None:
        with self.lock:
            self.result.failures.append(message)
        print(f"chaos: FAILURE: {message}", file=sys.stderr, flush=True)
        self.chaos_over.set()

    def note(self, message: str) -> None:
        with self.lock:
            self.result.notes.append(message)

    def event(self, message: str) -> None:
        print(f"chaos: {time.monotonic() - self.started:6.1f}s {message}", file=sys.stderr, flush=True)

    def up_peers(self) -> list[PeerProc]:
        with self.lock:
            excluded = self.down | self.gone
        return [p for p in list(self.cluster.peers) if p.running and p.index not in excluded]

    def fault_ended(self) -> None:
        with self.lock:
            self.last_fault_end = max(self.last_fault_end, time.monotonic())

    def guarded(self, what: str, fn: Callable[[], None]) -> Callable[[], None]:
        """A thread body: an unexpected exception is a failure of the run, never a silent thread death."""

        def body() -> None:
            try:
                fn()
            except Exception:  # noqa: BLE001 - reported as a failure of the run
                self.fail(f"{what} crashed:\n{traceback.format_exc()}")

        return body

    # ---------------------------------------------------------------- main line

    def run(self) -> ChaosResult:
        self.started = time.monotonic()
        scraper = MetricsScraper(lambda: list(self.cluster.peers), lambda problem: self.fail(f"metrics: {problem}"))
        self.result.scrapes = scraper.stats
        try:
            self.cluster.start(self.cfg.peers)
            self.event(f"{self.cfg.peers} peers up, {self.cfg.redundancy}")
            with scraper:
                self.chaos_phase()
                self.final_checks()
        except Exception:  # noqa: BLE001 - reported with the figures gathered so far
            self.fail(f"chaos run aborted:\n{traceback.format_exc()}")
        finally:
            self.chaos_over.set()
            self.result.runtime_s = time.monotonic() - self.started
            if self.result.failures:
                self.result.logs = self.cluster.tail_logs()
            self.cluster.close()
        return self.result

    def chaos_phase(self) -> None:
        end = time.monotonic() + self.cfg.duration_s
        threads = [threading.Thread(target=self.guarded(f"client {i}", functools.partial(self.client_loop, i, end)),
                                    name=f"chaos-client-{i}", daemon=True) for i in range(self.cfg.clients)]
        injector = threading.Thread(target=self.guarded("fault injector", lambda: self.inject_faults(end)),
                                    name="chaos-faults", daemon=True)
        for t in [*threads, injector]:
            t.start()
        self.chaos_over.wait(max(0.0, end - time.monotonic()))
        self.chaos_over.set()
        self.event("chaos over: stopping clients and faults")
        bound = self.cfg.request_timeout_s + 60
        for group in ([*threads, injector], self.fault_threads):  # the injector may still add a fault
            for t in list(group):
                t.join(bound)
                if t.is_alive():
                    self.fail(f"thread {t.name} did not stop within {bound:.0f} s")
        with self.lock:
            self.last_fault_end = self.last_fault_end or end  # a run without faults: time from its end
        for kind, n in sorted(self.errors.items()):
            self.note(f"{n} x {kind}")

    # ---------------------------------------------------------------- clients

    def client_loop(self, index: int, end: float) -> None:
        rng = random.Random(self.cfg.seed * 1000 + index)
        begin = time.monotonic()
        while not self.chaos_over.is_set() and time.monotonic() < end:
            with self.lock:
                have = len(self.acked)
            # Uploads are spread over the whole run: at most max_versions in proportion to the time passed.
            allowed = self.cfg.max_versions * (time.monotonic() - begin) / self.cfg.duration_s
            if have and (have >= allowed or rng.random() < 0.4):
                self.download(rng)
            else:
                self.upload(rng, index)
            self.chaos_over.wait(rng.uniform(0, self.cfg.op_pause_s))

    def pick_peer(self, rng: random.Random) -> PeerProc | None:
        peers = self.up_peers()
        return rng.choice(peers) if peers else None

    def plan_upload(self, rng: random.Random, client: int) -> tuple[str, list[Segment], str]:
        """(name, content recipe, kind): a new file, a new version of a name, or content sharing chunks."""
        with self.lock:
            names, acked = list(self.names), list(self.acked)
        roll = rng.random()
        if acked and roll < 0.2:
            base = rng.choice(acked)
            whole = max(1, base.size // CHUNK_SIZE)
            keep = recipe_prefix(base.recipe, rng.randint(1, whole) * CHUNK_SIZE)
            tail = [] if rng.random() < 0.3 else [(rng.getrandbits(64), n := rng.randint(1, 2 * MIB), n)]
            return f"chaos/c{client}-{rng.getrandbits(32):08x}.bin", keep + tail, "shared"
        name = f"chaos/c{client}-{rng.getrandbits(32):08x}.bin"
        kind = "new"
        if names and roll < 0.45:
            name, kind = rng.choice(names), "new_version"
        if rng.random() < self.cfg.small_ratio:
            size = rng.randint(1, 64 * KIB)
        else:
            size = rng.randint(self.cfg.min_size, self.cfg.max_size)
        return name, [(rng.getrandbits(64), size, size)], kind

    def upload(self, rng: random.Random, client: int) -> None:
        name, recipe, kind = self.plan_upload(rng, client)
        data = materialize(recipe)
        peer = self.pick_peer(rng)
        if peer is None:
            return
        self.count("uploads_attempted")
        with self.lock:
            if name not in self.names:
                self.names.append(name)
        try:
            with peer.client(timeout=self.cfg.request_timeout_s) as c:
                up = c.upload(data, name=name)
        except IntegrityError as exc:
            if exc.code is None:  # detected by the client: the peer stored other bytes than were sent
                self.fail(f"upload of {name} through peer{peer.index}: {exc}")
                return
            self.upload_error(exc)
            return
        except DfsClientError as exc:
            self.upload_error(exc)
            return
        v = up.version
        sha = hashlib.sha256(data).hexdigest()
        expected = chunk_ids_of(data)
        got = tuple(ch.chunk_id for ch in v.chunks)
        if v.sha256 != sha or v.size != len(data) or got != expected:
            self.fail(f"upload of {name} acknowledged as v{v.version} sha {v.sha256[:12]} with {len(got)} chunks, "
                      f"sent sha {sha[:12]} in {len(expected)} chunks")
            return
        policy = self.cfg.redundancy
        stored = stored_of(v, policy)
        if v.policy != str(policy) or any(len(st.fragments) != (policy.width if policy.erasure_coded else 0)
                                          for st in stored):
            self.fail(f"upload of {name} acknowledged as v{v.version} under {v.policy!r} with "
                      f"{[len(st.fragments) for st in stored]} fragments per chunk; the cluster's policy is {policy}")
            return
        with self.lock:
            self.acked.append(Acked(name, v.version, sha, len(data), stored, tuple(recipe)))
            self.result.counts["uploads_acked"] += 1
            if kind != "new":
                self.result.counts[f"acked_{kind}"] += 1

    def upload_error(self, exc: DfsClientError) -> None:
        self.count("uploads_failed")
        with self.lock:
            self.errors[f"upload {type(exc).__name__}"] += 1

    def download(self, rng: random.Random) -> None:
        with self.lock:
            target = rng.choice(self.acked)
        peer = self.pick_peer(rng)
        if peer is None:
            return
        outcome, detail = self.fetch(peer, target)
        if outcome == "ok":
            self.count("downloads_ok")
        elif outcome == "error":
            self.count("downloads_failed")
            with self.lock:
                self.errors[f"download {detail}"] += 1
        else:
            self.fail(f"download of {target.name} v{target.version} through peer{peer.index}: {outcome}: {detail}")

    def fetch(self, peer: PeerProc, target: Acked) -> tuple[str, str]:
        """(outcome, detail): "ok"; "error" when the peer could not serve it (tolerated during faults);
        "missing" when the acknowledged version is not found; "wrong" when other bytes arrived."""
        digest = hashlib.sha256()
        received = 0
        try:
            with peer.client(timeout=self.cfg.request_timeout_s) as c:
                with c.iter_download(target.name, version=target.version) as stream:
                    if stream.info.sha256 != target.sha256:
                        return "wrong", f"served sha {stream.info.sha256[:12]}, acknowledged {target.sha256[:12]}"
                    for piece in stream:
                        digest.update(piece)
                        received += len(piece)
        except NotFoundError as exc:
            return "missing", str(exc)
        except IntegrityError as exc:
            if exc.code is None:  # detected by the client: the bytes received do not match
                return "wrong", str(exc)
            return "error", f"{type(exc).__name__} {exc.code}"
        except DfsClientError as exc:
            return "error", f"{type(exc).__name__} {exc.code}"
        if digest.hexdigest() != target.sha256 or received != target.size:
            return "wrong", f"{received} bytes with sha {digest.hexdigest()[:12]}"
        return "ok", ""

    # ---------------------------------------------------------------- faults

    def inject_faults(self, end: float) -> None:
        cfg = self.cfg
        rng = random.Random(cfg.seed)
        t0 = time.monotonic()
        # Each kind happens at least once at a seeded moment; the leaves and joins only then.
        due = sorted([(t0 + cfg.duration_s * rng.uniform(0.05, 0.2), "kill"),
                      (t0 + cfg.duration_s * rng.uniform(0.1, 0.3), "corrupt"),
                      (t0 + cfg.duration_s * rng.uniform(0.6, 0.85), "pause")]
                     + [(t0 + cfg.duration_s * rng.uniform(0.2, 0.45), "leave") for _ in range(cfg.leaves)]
                     + [(t0 + cfg.duration_s * rng.uniform(0.45, 0.7), "join") for _ in range(cfg.joins)])
        while not self.chaos_over.wait(rng.uniform(0.5, 1.5) * cfg.fault_interval_s):
            if time.monotonic() >= end:
                return
            kind = due.pop(0)[1] if due and due[0][0] <= time.monotonic() else ""
            kind = kind or rng.choices(["kill", "pause", "corrupt"], weights=[4, 3, 3])[0]
            if not self.take_slots(BUDGETS[kind], end):
                return
            action = self.plan_fault(kind, rng)
            if action is None:
                for budget in BUDGETS[kind]:
                    self.release_slot(budget)
                continue
            thread = threading.Thread(target=self.guarded(f"fault {kind}", action), name=f"chaos-{kind}", daemon=True)
            self.fault_threads.append(thread)
            thread.start()

    def take_slots(self, budgets: tuple[str, ...], end: float) -> bool:
        """Waits until each budget has one of its `parity` slots free, then takes them all at once; False
        when the chaos ended first."""
        while not self.chaos_over.is_set() and time.monotonic() < end:
            with self.lock:
                if all(self.slots_used[b] < self.cfg.parity for b in budgets):
                    self.slots_used.update(budgets)
                    return True
            self.chaos_over.wait(0.1)
        return False

    def release_slot(self, budget: str) -> None:
        with self.lock:
            self.slots_used[budget] -= 1

    def plan_fault(self, kind: str, rng: random.Random) -> Callable[[], None] | None:
        """Chooses the victim and parameters on the seeded RNG; None when there is nothing to hit."""
        if kind == "join":
            return self.join
        if kind == "corrupt":  # any disk, also a killed or paused peer's: rot does not wait for uptime
            with self.lock:
                victims = [p for p in self.cluster.peers if p.node_id and p.index not in self.gone]
        else:
            victims = self.up_peers()
        if len(victims) <= 1:
            return None
        victim = rng.choice(sorted(victims, key=lambda p: p.index))
        with self.lock:
            if kind != "corrupt":
                self.down.add(victim.index)
        if kind == "kill":
            downtime = rng.uniform(0.3, 7.0)  # beyond dead-timeout + dead-grace (5 s) the ring changes
            return lambda: self.kill_restart(victim, downtime)
        if kind == "pause":
            pause = rng.uniform(0.3, 6.0)  # beyond 1 s suspect, 2 s dead, 5 s off the ring
            return lambda: self.pause(victim, pause)
        if kind == "leave":
            return lambda: self.leave(victim)
        return lambda: self.corrupt(victim, rng.random(), rng.randint(1, 64), rng.random())

    def seen_alive(self, victim: PeerProc) -> None:
        observers = [p for p in self.up_peers() if p is not victim]
        if not observers:
            return

        def alive() -> bool:
            with observers[0].client(timeout=3) as c:
                return any(m.node_id == victim.node_id and m.state == "alive" for m in c.status().members)

        try:
            wait_for(alive, 20, f"peer{victim.index} seen alive by peer{observers[0].index}")
        except AssertionError as exc:
            self.fail(str(exc))

    def kill_restart(self, victim: PeerProc, downtime: float) -> None:
        try:
            victim.kill()
            self.count_fault("kill+restart")
            self.event(f"SIGKILL peer{victim.index} {victim.node_id[:8]} for {downtime:.1f} s")
            time.sleep(downtime)
            self.cluster.restart(victim)
            self.event(f"restarted peer{victim.index}")
            self.seen_alive(victim)
        finally:
            with self.lock:
                self.down.discard(victim.index)
            self.fault_ended()
            self.release_slot("down")

    def pause(self, victim: PeerProc, seconds: float) -> None:
        try:
            victim.pause()
            self.count_fault("pause")
            self.event(f"SIGSTOP peer{victim.index} {victim.node_id[:8]} for {seconds:.1f} s")
            time.sleep(seconds)
        finally:
            victim.resume()
        try:
            self.seen_alive(victim)
        finally:
            with self.lock:
                self.down.discard(victim.index)
            self.fault_ended()
            self.release_slot("down")

    def leave(self, victim: PeerProc) -> None:
        held = self.held_acked_ids(victim)
        self.count_fault("leave")
        self.event(f"SIGTERM peer{victim.index} {victim.node_id[:8]}: leaves for good, taking {len(held)} pieces")
        with self.lock:
            self.gone.add(victim.index)
        try:
            try:
                code = victim.terminate()
            finally:
                self.fault_ended()
                self.release_slot("down")
            if code != 0:
                self.note(f"peer{victim.index} exited with {code} after SIGTERM")
            self.hold_until_healed(held, f"the {len(held)} pieces peer{victim.index} held before leaving")
        finally:
            self.release_slot("loss")

    def join(self) -> None:
        peer = self.cluster.add_peer()
        self.count_fault("join")
        self.fault_ended()
        self.event(f"peer{peer.index} {peer.node_id[:8]} joined")

    def corrupt(self, victim: PeerProc, pick: float, run: int, where: float) -> None:
        try:
            files = self.held_files(victim)
            if not files:
                return
            path = files[int(pick * len(files))]
            if not flip_bytes(path, run, where):
                return
            piece = "fragment" if self.cfg.redundancy.erasure_coded else "chunk"
            self.count_fault("corrupt")
            self.fault_ended()
            self.event(f"corrupted {run} bytes of {piece} {path.name[:12]} on peer{victim.index}")
            self.hold_until_healed([path.name], f"corrupted {piece} {path.name[:12]}", also_intact=[path])
        finally:
            self.release_slot("loss")

    def count_fault(self, kind: str) -> None:
        with self.lock:
            self.result.faults[kind] += 1

    def held_files(self, peer: PeerProc) -> list[Path]:
        """The files on `peer`'s disk that hold an acknowledged version's chunk or fragment."""
        with self.lock:
            acked_ids = {i for a in self.acked for i in a.ids}
        return sorted(p for p in (peer.data_dir / "chunks").glob("*/*/*") if p.name in acked_ids)

    def held_acked_ids(self, peer: PeerProc) -> list[str]:
        return [p.name for p in self.held_files(peer)]

    def stored_holding(self, ids: Iterable[str]) -> list[Stored]:
        """The acknowledged chunks that some of `ids` is a copy or a fragment of."""
        wanted = set(ids)
        with self.lock:
            return list({s for a in self.acked for s in a.stored if wanted.intersection(s.ids)})

    def hold_until_healed(self, ids: list[str], what: str, also_intact: Iterable[Path] = ()) -> None:
        """Keeps the caller's slot until every piece in `ids` is intact on the owners that must hold
        it again (and no file in `also_intact` is corrupt), or until the chaos ends; the final checks
        judge the rest."""
        started = time.monotonic()
        why = "not checked yet"
        while not self.chaos_over.is_set():
            try:
                why = self.unhealed(ids) or next(
                    (f"{p.name[:12]} still corrupt" for p in also_intact if self.copies.state(p, p.name) is False), "")
            except (DfsClientError, IndexError, OSError) as exc:
                why = f"observer failed: {exc}"  # it went down meanwhile: look again
            if not why:
                self.event(f"healed after {time.monotonic() - started:.1f} s: {what}")
                return
            self.chaos_over.wait(0.5)
        self.event(f"not healed when the chaos ended ({time.monotonic() - started:.1f} s): {what}: {why}")

    def unhealed(self, ids: list[str]) -> str:
        """Why some piece in `ids` is not intact on an owner that must hold it (as one up peer sees
        the ring), or ""."""
        up = self.up_peers()
        with up[0].client(timeout=3) as c:
            ring = ring_of(c.status())
        return self.missing_pieces(ring, self.stored_holding(ids), up, only=set(ids))

    def missing_pieces(self, ring: HashRing, stored: list[Stored], peers: list[PeerProc],
                       only: set[str] | None = None) -> str:
        """The first piece of `stored` (of those in `only`, if given) without an intact file on each
        peer among `peers` that must hold it under `ring` (the R owners of a copy, owner i of
        fragment i), or ""."""
        short = short_ring(ring, stored)
        if short:
            return short
        by_id = {p.node_id: p for p in peers}
        for stored_id, owners in sorted(expected_holders(ring, stored).items()):
            if only is not None and stored_id not in only:
                continue
            for owner in sorted(owners):
                peer = by_id.get(owner)
                state = None if peer is None else self.copies.state(peer.chunk_path(stored_id), stored_id)
                if state is not True:
                    what = "owner down" if peer is None else "corrupt piece" if state is False else "no piece"
                    return f"{stored_id[:12]}: {what} on owner {owner[:8]}"
        return ""

    # ---------------------------------------------------------------- the end

    def final_checks(self) -> None:
        self.cluster.wait_converged(timeout=30)
        self.event("ring converged")
        self.check_acknowledged_listed()
        self.measure_replication()
        self.verify_downloads()
        self.check_peers_running()
        self.result.quarantined = sum(len(list((p.data_dir / "quarantine").glob("*"))) for p in self.cluster.peers)
        try:
            self.result.misplaced_after = len(redundancy_report(self.cluster, self.cfg.redundancy).misplaced)
        except Exception as exc:  # noqa: BLE001 - a figure, not a check
            self.note(f"last placement report failed: {exc}")

    def check_acknowledged_listed(self) -> None:
        """Every acknowledged version is still listed, with the SHA-256 it was acknowledged with."""
        listed: dict[tuple[str, int], str] = {}
        peer = self.up_peers()[0]
        with peer.client(timeout=30) as c:
            for name in sorted({a.name for a in self.acked}):
                try:
                    listed.update({(name, v.version): v.sha256 for v in c.versions(name)})
                except NotFoundError:
                    pass
        for a in self.acked:
            sha = listed.get((a.name, a.version))
            if sha != a.sha256:
                self.fail(f"acknowledged {a.name} v{a.version} is " + ("not listed" if sha is None else
                          f"listed with sha {sha[:12]}, acknowledged {a.sha256[:12]}"))

    def measure_replication(self) -> None:
        """Polls the placement on disk until every piece of every live version is intact on the owners
        that must hold it (R copies on a chunk's R owners, fragment i on owner i), timed from the end
        of the last fault; fails past the bound, but keeps looking a while longer to report when.

        Polls use cached hashes (a poll re-hashes only files that changed), so the figure is not
        inflated by the check itself; the first poll that passes is confirmed by the independent,
        uncached redundancy_report of tests/redundancy.py before it counts.
        """
        cfg = self.cfg
        give_up = self.last_fault_end + cfg.replication_bound_s + min(60.0, cfg.replication_bound_s / 2)
        stored = referenced_stored(self.up_peers()[0], cfg.redundancy)
        self.result.chunks = len({s.chunk_id for s in stored})
        last = "no check yet"
        while True:
            try:
                last = self.unreplicated(stored)
                if not last:
                    at = time.monotonic()
                    report = redundancy_report(self.cluster, cfg.redundancy)
                    if replicated(report):
                        self.replicated_at(at, report)
                        return
                    last = f"cached check passed, redundancy_report did not: {report.describe()}"
                    self.event(last)
            except Exception as exc:  # noqa: BLE001 - a peer not answering yet is "not yet"
                last = f"check failed: {exc}"
            if time.monotonic() >= give_up:
                self.fail(f"not fully replicated {time.monotonic() - self.last_fault_end:.0f} s after the last "
                          f"fault (bound {cfg.replication_bound_s:g} s): {last}")
                return
            time.sleep(0.2)

    def replicated_at(self, at: float, report: Report) -> None:
        elapsed = at - self.last_fault_end
        self.result.time_to_full_replication_s = elapsed
        self.result.pieces = report.total
        self.event(f"fully replicated {elapsed:.1f} s after the last fault: {report.describe()}")
        if elapsed > self.cfg.replication_bound_s:
            self.fail(f"full replication took {elapsed:.1f} s, bound {self.cfg.replication_bound_s:g} s")

    def unreplicated(self, stored: list[Stored]) -> str:
        """What keeps the cluster from full redundancy ("" when nothing): the live peers disagree on
        the ring, a piece is not intact on an owner that must hold it, or a live peer holds a corrupt
        piece."""
        live = self.cluster.live()
        statuses = {}
        for p in live:
            with p.client(timeout=3) as c:
                statuses[p.index] = c.status()
        ring = ring_of(statuses[live[0].index])
        digests = {st.ring_digest for st in statuses.values()}
        if digests != {ring.digest}:
            return f"ring digests {sorted(digests)}, expected {ring.digest}"
        missing = self.missing_pieces(ring, stored, live)
        if missing:
            return missing
        ids = {i for s in stored for i in s.ids}
        for p in live:  # what each disk holds, rather than a look for every piece on every peer
            for path in (p.data_dir / "chunks").glob("*/*/*"):
                if path.name in ids and self.copies.state(path, path.name) is False:
                    return f"{path.name[:12]}: corrupt piece on peer{p.index}"
        return ""

    def verify_downloads(self) -> None:
        """Downloads every acknowledged version through a random live peer and compares its SHA-256."""
        rng = random.Random(self.cfg.seed + 1)
        peers = self.up_peers()
        jobs = [(a, rng.choice(peers)) for a in self.acked]

        def one(job: tuple[Acked, PeerProc]) -> None:
            target, peer = job
            outcome, detail = self.fetch(peer, target)
            self.count(f"final_{outcome}")
            if outcome != "ok":
                self.fail(f"final download of {target.name} v{target.version} through peer{peer.index}: "
                          f"{outcome}: {detail}")

        with ThreadPoolExecutor(max_workers=max(1, self.cfg.clients)) as pool:
            list(pool.map(one, jobs))
        self.event(f"downloaded all {len(jobs)} acknowledged versions")

    def check_peers_running(self) -> None:
        for p in self.cluster.peers:
            if p.index not in self.gone and not p.running:
                code = p.proc.returncode if p.proc is not None else None
                self.fail(f"peer{p.index} {p.node_id[:8]} is not running (exit code {code}) though no fault stopped it")


def replicated(report: Report) -> bool:
    """The end condition: one agreed ring, and every piece of a live version intact on the owners
    that must hold it, with no corrupt piece anywhere. Pieces left on non-owners are reported, not
    required gone."""
    return report.ring_agreed and not report.under_replicated and not report.corrupt


def flip_bytes(path: Path, run: int, where: float) -> bool:
    """Inverts `run` bytes in place at a relative offset: same size, same inode, wrong content."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return False
        run = min(run, size)
        offset = int(where * (size - run))
        old = os.pread(fd, run, offset)
        os.pwrite(fd, bytes(b ^ 0xFF for b in old), offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def run_chaos(base_dir: Path, cfg: ChaosConfig) -> ChaosResult:
    """Runs one bounded chaos run with its cluster under `base_dir`; never raises for a failed check."""
    base_dir.mkdir(parents=True, exist_ok=True)
    return ChaosRun(base_dir, cfg).run()


# ------------------------------------------------------------------------------------------ command line


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true",
                        help=f"the long run: {LONG.peers} peers, R={LONG.replicas}, {LONG.duration_s:g} s, more data")
    parser.add_argument("--seed", type=int, help="seed of the fault and client RNGs")
    parser.add_argument("--duration", type=float, help="seconds of chaos before the final checks")
    parser.add_argument("--peers", type=int)
    parser.add_argument("--replicas", type=int)
    parser.add_argument("--policy", help="the cluster's redundancy policy, rep:R or ec:K+M (default rep:REPLICAS); "
                                         "ec:4+2 wants 9 peers for the long run's two leaves")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--dir", default=None, help="parent of the run's data directory (default: system tmp)")
    parser.add_argument("--keep", action="store_true", help="keep peer data and logs even when the run passed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    cfg = LONG if args.long else DEFAULT
    overrides = {"seed": args.seed, "duration_s": args.duration, "peers": args.peers,
                 "replicas": args.replicas, "policy": args.policy, "clients": args.clients}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    try:
        cfg.validate()
    except ValueError as exc:
        print(f"python -m tests.chaos: {exc}", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="dfs-chaos-", dir=args.dir))
    result = run_chaos(base, cfg)
    print(result.summary(), flush=True)
    if not result.ok:
        print(result.logs)
    if result.ok and not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"peer data and logs kept in {base}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
