"""Partition run: peers on their own hosts (tests/netns.py) under client load while the network
between them fails, combined with crashes, pauses, disk rot, joins and leaves.

`run_partitions(base, cfg)` builds a `Network`, starts `cfg.peers` peers on it (tests/netns_cluster.py)
and runs client threads that upload and download through peers on every side, each call recorded in a
`History` (tests/history.py). Faults come from a script (the bounded run: each kind once, one after
another) or from two seeded random lanes running side by side (the long run): a network lane (one
network fault at a time) and a process lane (SIGKILL and restart, SIGSTOP, corruption, join, leave,
with tests/chaos.py's budgets: at most R-1 peers down and R-1 copy-destroying faults unhealed at once).

Network faults, each between peers only (the test's clients, on the bridge, still reach every peer
whose link is up):
- split: the peers in two groups (sizes n//2 | n - n//2), no packet crossing either way;
- isolate: one peer apart from all others, yet reachable by clients: a side with fewer than R peers;
- asym: A reaches B but B does not reach A (a blackhole route on B's side);
- cut: one peer's link down, unreachable by anyone;
- flap: one peer's link going down and up at random intervals.

What each side can and cannot do is docs/ARCHITECTURE.md "Partitions"; `side_checks` asserts it on
the calls that started once the fault had settled and ended before it healed, for every network fault
no other fault overlapped. After the last fault heals, clients stop and the run measures: membership
convergence (every peer sees every peer alive on one ring), the time until every owner holds an intact
copy of every acknowledged chunk, and until no copy beyond the policy is left; a watcher checks
meanwhile that no copy on a non-owner disappears before every owner holds one. Finally every peer lists
every version and downloads every acknowledged one, and `history.check` judges the whole history.

`python -m tests.netns_run [--long] [--seed N] [--duration S]` runs it from the command line and
prints the figures; the exit code is 0 only when every check held.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import random
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from client import DfsClientError, IntegrityError
from peer.ring.hashring import HashRing
from tests.chaos import BUDGETS, CopyCheck, Segment, flip_bytes, materialize, recipe_prefix
from tests.cluster import FAST, PeerProc, wait_for
from tests.history import Final, FinalRead, History, Op, Verdict, check
from tests.netns import Network
from tests.netns_cluster import GOSSIP_PORT, NetnsCluster, NetnsPeer
from tests.replication import placement_report, ring_of

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

NETWORK_KINDS = ("split", "isolate", "asym", "cut", "flap")
PROCESS_KINDS = ("kill", "pause", "corrupt", "join", "leave")


@dataclass(frozen=True)
class PartitionConfig:
    peers: int = 5
    replicas: int = 2
    script: tuple[tuple[str, float], ...] = ()
    """Faults run one after another, each (kind, seconds); empty: the two random lanes for `duration_s`."""
    duration_s: float = 40.0
    """Random lanes: seconds of faults. Either way the pace of uploads is spread over this."""
    gap_s: tuple[float, float] = (0.8, 1.5)
    """Seconds between two faults of one lane (uniform)."""
    clients: int = 3
    names: int = 12
    """Files written to: few, so every name gets many versions, some of them concurrently."""
    chunk_size: int = 256 * KIB
    max_chunks: int = 3
    small_ratio: float = 0.25
    max_versions: int = 250
    seed: int = 1
    joins: int = 0
    leaves: int = 0
    min_peers: int = 4
    """Leaves stop at this many peers, so a split still leaves R peers on each side."""
    rpc_timeout_s: float = 3.0
    request_timeout_s: float = 20.0
    faulty_link_timeout_s: float = 4.0
    """Client deadline of a call to a peer whose link is down or flapping (it cannot answer)."""
    op_pause_s: float = 0.12
    settle_s: float = 1.5
    """Calls that started this long after a fault began are judged by side_checks (suspect timeout + 0.5 s)."""
    convergence_bound_s: float = 10.0
    redundancy_base_s: float = 30.0
    redundancy_per_gib_s: float = 240.0
    """Full redundancy must hold within base + per_gib x GiB held (every copy counted) after the heal."""

    def validate(self) -> PartitionConfig:
        if self.replicas < 2:
            raise ValueError("needs replicas >= 2")
        if self.peers < 2 * self.replicas:
            raise ValueError("a split must leave R peers on each side: peers >= 2R")
        if self.peers - self.leaves < self.min_peers:
            raise ValueError("peers - leaves must stay at least min_peers")
        unknown = {kind for kind, _ in self.script} - set(NETWORK_KINDS) - set(PROCESS_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        return self

    def peer_flags(self) -> list[str]:
        """The FAST gossip profile with fast self-healing (as tests/chaos.py), a short rpc timeout so a call
        across a cut fails over quickly, and small chunks so small files still span several."""
        return [*FAST, "--repair-interval", "0.3", "--scrub-interval", "1", "--scrub-rate", "0", "--gc-interval", "2",
                "--gc-grace", "30", "--dead-grace", "3", "--rpc-timeout", str(self.rpc_timeout_s),
                "--chunk-size", str(self.chunk_size)]

    def redundancy_bound(self, held_bytes: int) -> float:
        return self.redundancy_base_s + self.redundancy_per_gib_s * held_bytes / GIB


BOUNDED_SCRIPT: tuple[tuple[str, float], ...] = (
    ("kill", 2.0), ("pause", 2.0), ("cut", 3.0), ("flap", 3.5), ("asym", 5.0), ("isolate", 4.0), ("split", 6.0),
)
"""The bounded run: every kind of partition once, after a SIGKILL and restart and a SIGSTOP. The split
comes last and outlasts the dead timeout plus the dead grace, so both sides rebuild their rings and the
heal that ends the run has hinted copies to hand back and a rebalance to undo."""

BOUNDED = PartitionConfig(script=BOUNDED_SCRIPT, duration_s=36.0)
LONG = PartitionConfig(peers=6, duration_s=600.0, clients=4, names=40, gap_s=(1.0, 5.0), max_versions=1500, joins=2,
                       leaves=2, max_chunks=4, convergence_bound_s=15.0)


@dataclass
class Episode:
    """One fault, as it happened: what, when (history time), and each peer's side meanwhile."""

    kind: str
    start: float
    end: float = -1.0
    sides: dict[int, str] = field(default_factory=dict)
    """Peer index -> side label ("A"/"B" in a split, "lone"/"rest", "reaching"/"cut off", "down"...)."""
    detail: str = ""

    def label(self) -> str:
        return f"{self.kind} {self.detail}".strip()


@dataclass
class SideFigures:
    """Calls judged for one side of one kind of fault: by outcome."""

    uploads: Counter[str] = field(default_factory=Counter)
    downloads: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        def fmt(c: Counter[str]) -> str:
            ok = c.get("ok", 0)
            rest = ", ".join(f"{n} {k}" for k, n in sorted(c.items()) if k != "ok")
            return f"{ok}/{sum(c.values())} ok" + (f" ({rest})" if rest else "")
        return f"uploads {fmt(self.uploads)}, downloads {fmt(self.downloads)}"


@dataclass
class PartitionResult:
    cfg: PartitionConfig
    faults: Counter[str] = field(default_factory=Counter)
    episodes: list[Episode] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)
    sides: dict[tuple[str, str], SideFigures] = field(default_factory=dict)
    """(fault kind, side) -> calls judged."""
    judged_episodes: Counter[str] = field(default_factory=Counter)
    hinted: int = 0
    """Chunks of versions written on one side of a split whose owners (on the full ring) include a peer
    across the cut: held meanwhile by stand-ins on the writing side."""
    uploads: Counter[str] = field(default_factory=Counter)
    downloads: Counter[str] = field(default_factory=Counter)
    peers_started: int = 0
    convergence_s: float | None = None
    redundancy_s: float | None = None
    """After the heal: until every owner holds an intact copy of every acknowledged chunk."""
    cleanup_s: float | None = None
    """After the heal: until no copy beyond the policy is left on a non-owner, confirmed by placement_report."""
    redundancy_bound_s: float = 0.0
    held_bytes: int = 0
    handed_back: int = 0
    """Copies owners gained after the heal."""
    extra_removed: int = 0
    """Copies on non-owners removed after the heal."""
    samples: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runtime_s: float = 0.0
    logs: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures and self.verdict.ok

    def summary(self) -> str:
        cfg, v = self.cfg, self.verdict
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))
        mode = "scripted" if cfg.script else f"{cfg.duration_s:g} s of random"
        bound = f"bound {cfg.convergence_bound_s:g} s"
        conv = f"{self.convergence_s:.1f} s ({bound})" if self.convergence_s is not None else f"NOT within {bound}"
        red_bound = f"bound {self.redundancy_bound_s:.0f} s for {self.held_bytes / MIB:.0f} MiB held"

        def secs(x: float | None) -> str:
            return f"{x:.1f} s" if x is not None else "not reached"

        lines = [
            f"partition run: seed {cfg.seed}, {self.peers_started} peers in their own network namespaces "
            f"({cfg.peers} at the start), R={cfg.replicas}, {mode} faults, {cfg.clients} clients",
            f"  faults                 : {sum(self.faults.values())} ({kinds})",
            f"  uploads                : {sum(self.uploads.values())} ({self._counts(self.uploads)})",
            f"  downloads              : {sum(self.downloads.values())} ({self._counts(self.downloads)})",
            f"  acknowledged versions  : {v.acknowledged}; lost {v.lost}; wrong reads {v.wrong_reads}; "
            f"stale reads {v.stale_reads}",
            f"  history check          : {v.describe()}",
        ]
        lines += [f"  during {kind:<16}: side {side}: {fig.describe()}"
                  for (kind, side), fig in sorted(self.sides.items())]
        lines += [
            f"  hinted copies          : {self.hinted} chunks written during splits went to stand-ins on their side",
            f"  after the heal         : membership converged in {conv}; every owner held its copies after "
            f"{secs(self.redundancy_s)}, no copy beyond the policy after {secs(self.cleanup_s)} ({red_bound})",
            f"  handoff                : {self.handed_back} copies reached their owners, {self.extra_removed} extra "
            f"copies removed, none before every owner held one ({self.samples} samples)",
            f"  total runtime          : {self.runtime_s:.1f} s",
            f"  result                 : {'PASS' if self.ok else 'FAIL'}",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  FAILURE: {f}" for f in self.failures]
        lines += [f"  PROBLEM: {p}" for p in v.problems]
        return "\n".join(lines)

    @staticmethod
    def _counts(c: Counter[str]) -> str:
        return ", ".join(f"{n} {k}" for k, n in c.most_common())


def chunk_layout(data: bytes, chunk_size: int) -> list[tuple[str, int]]:
    return [(hashlib.sha256(data[i : i + chunk_size]).hexdigest(), len(data[i : i + chunk_size]))
            for i in range(0, len(data), chunk_size)]


def error_name(exc: DfsClientError) -> str:
    """"Class CODE", with "local" as the code of an error the SDK detected itself (bytes that did not match)."""
    return f"{type(exc).__name__} {exc.code or 'local'}"


class PartitionRun:
    def __init__(self, base: Path, cfg: PartitionConfig) -> None:
        self.cfg = cfg.validate()
        self.base = base
        self.result = PartitionResult(cfg)
        self.network = Network()
        self.cluster = NetnsCluster(base / "peers", self.network, replicas=cfg.replicas, extra=cfg.peer_flags())
        self.history = History(base / "history.jsonl")
        self.lock = threading.Lock()
        self.stop = threading.Event()
        """Set when the fault phase ends, or a failure ends the run early."""
        self.names = [f"p/n{i:02d}.bin" for i in range(cfg.names)]
        # Client-side bookkeeping, under self.lock.
        self.acked: list[tuple[str, int]] = []
        self.recipes: list[list[Segment]] = []
        self.chunk_sizes: dict[str, int] = {}
        """Every chunk of an acknowledged version, with its size: what the heal watcher follows."""
        self.down: set[int] = set()
        """Peers clients must not call: killed, paused, leaving or gone."""
        self.gone: set[int] = set()
        self.active: list[Episode] = []
        self.slots: Counter[str] = Counter()
        self.copies = CopyCheck()
        self.fault_threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- bookkeeping

    def fail(self, message: str) -> None:
        with self.lock:
            self.result.failures.append(message)
        print(f"partitions: FAILURE: {message}", file=sys.stderr, flush=True)
        self.stop.set()

    def event(self, message: str) -> None:
        print(f"partitions: {self.history.now():6.1f}s {message}", file=sys.stderr, flush=True)

    def guarded(self, what: str, fn: Callable[[], None]) -> Callable[[], None]:
        def body() -> None:
            try:
                fn()
            except Exception:  # noqa: BLE001 - a crashed thread fails the run instead of vanishing
                self.fail(f"{what} crashed:\n{traceback.format_exc()}")
        return body

    def peers_up(self) -> list[PeerProc]:
        with self.lock:
            excluded = self.down | self.gone
        return [p for p in list(self.cluster.peers) if p.running and p.index not in excluded and p.node_id]

    def begin_episode(self, kind: str, sides: dict[int, str], detail: str = "") -> Episode:
        ep = Episode(kind, self.history.now(), sides=sides, detail=detail)
        with self.lock:
            self.active.append(ep)
            self.result.episodes.append(ep)
            self.result.faults[kind] += 1
        self.event(f"{ep.label()} begins")
        return ep

    def end_episode(self, ep: Episode) -> None:
        ep.end = self.history.now()
        with self.lock:
            if ep in self.active:
                self.active.remove(ep)
        self.event(f"{ep.label()} healed after {ep.end - ep.start:.1f} s")

    # ---------------------------------------------------------------- main line

    def run(self) -> PartitionResult:
        started = time.monotonic()
        try:
            self.network.create()
            self.start_peers()
            self.fault_phase()
            self.after_heal()
        except Exception:  # noqa: BLE001 - reported with the figures gathered so far
            self.fail(f"partition run aborted:\n{traceback.format_exc()}")
        finally:
            self.stop.set()
            self.result.runtime_s = time.monotonic() - started
            self.history.close()
            if not self.result.ok:
                self.result.logs = self.cluster.tail_logs()
            self.cluster.close()
            self.network.close()
            self.save_episodes()
        return self.result

    def start_peers(self) -> None:
        """All peers at once: each host's address is known in advance, so each can name two others as
        seeds before they are up (gossip retries seeds until one answers)."""
        hosts = [self.network.add_host() for _ in range(self.cfg.peers)]
        peers = [self.cluster.prepare_peer(h) for h in hosts]
        seeds = [f"{h.addr}:{GOSSIP_PORT}" for h in hosts]

        def start(i: int) -> None:
            peers[i].start([s for j, s in enumerate(seeds[:3]) if j != i][:2])

        with ThreadPoolExecutor(max_workers=len(peers)) as pool:
            list(pool.map(start, range(len(peers))))
        self.cluster.wait_converged(timeout=30)
        self.result.peers_started = len(peers)
        self.event(f"{len(peers)} peers up on {self.network.gateway.rsplit('.', 1)[0]}.0/24, R={self.cfg.replicas}")

    def fault_phase(self) -> None:
        cfg = self.cfg
        end = time.monotonic() + cfg.duration_s
        clients = [threading.Thread(target=self.guarded(f"client {i}", functools.partial(self.client_loop, i)),
                                    name=f"partition-client-{i}", daemon=True) for i in range(cfg.clients)]
        for t in clients:
            t.start()
        if cfg.script:
            lanes = [threading.Thread(target=self.guarded("fault script", self.scripted_lane), daemon=True)]
        else:
            lanes = [threading.Thread(target=self.guarded("network lane", lambda: self.network_lane(end)), daemon=True),
                     threading.Thread(target=self.guarded("process lane", lambda: self.process_lane(end)), daemon=True)]
        for t in lanes:
            t.start()
        bound = cfg.duration_s + 120 if cfg.script else None
        for t in lanes:
            t.join(bound)
        for t in list(self.fault_threads):
            t.join(120)
        self.stop.set()
        self.event("faults over: clients stop")
        for t in [*clients, *lanes, *self.fault_threads]:
            t.join(cfg.request_timeout_s + 30)
            if t.is_alive():
                self.fail(f"thread {t.name} did not stop")

    # ---------------------------------------------------------------- clients

    def client_loop(self, index: int) -> None:
        rng = random.Random(self.cfg.seed * 1000 + index)
        begin = time.monotonic()
        while not self.stop.is_set():
            target = self.pick_peer(rng)
            if target is None:
                self.stop.wait(0.1)
                continue
            peer, context, timeout = target
            with self.lock:
                have = len(self.acked)
            allowed = self.cfg.max_versions * (time.monotonic() - begin) / self.cfg.duration_s
            if have and (have >= allowed or rng.random() < 0.45):
                self.download(index, rng, peer, context, timeout)
            else:
                self.upload(index, rng, peer, context, timeout)
            self.stop.wait(rng.uniform(0, self.cfg.op_pause_s))

    def pick_peer(self, rng: random.Random) -> tuple[PeerProc, str, float] | None:
        """A side first, then a peer on it, so every side of a partition gets calls however small it is."""
        peers = self.peers_up()
        if not peers:
            return None
        with self.lock:
            active = list(self.active)
        sides: dict[str, list[PeerProc]] = defaultdict(list)
        net = next((ep for ep in active if ep.kind in NETWORK_KINDS), None)
        for p in peers:
            sides[net.sides.get(p.index, "rest") if net else "all"].append(p)
        side = rng.choice(sorted(sides))
        peer = rng.choice(sides[side])
        faulty = self.network.is_cut(peer.index) or (net is not None and net.kind == "flap"
                                                      and net.sides.get(peer.index) == "flapping")
        timeout = self.cfg.faulty_link_timeout_s if faulty else self.cfg.request_timeout_s
        context = "; ".join(ep.label() for ep in active) or "no fault"
        return peer, f"{context}; side {side}" if net else context, timeout

    def plan_content(self, rng: random.Random) -> list[Segment]:
        cfg = self.cfg
        with self.lock:
            recipes = list(self.recipes[-200:])
        if recipes and rng.random() < 0.2:  # share leading chunks with an acknowledged version
            base = rng.choice(recipes)
            size = sum(keep for _, _, keep in base)
            whole = max(1, size // cfg.chunk_size)
            keep = recipe_prefix(base, rng.randint(1, whole) * cfg.chunk_size)
            n = rng.randint(1, cfg.chunk_size)
            return [*keep, (rng.getrandbits(64), n, n)]
        if rng.random() < cfg.small_ratio:
            size = rng.randint(1, 4 * KIB)
        else:
            size = rng.randint(1, cfg.max_chunks * cfg.chunk_size)
        return [(rng.getrandbits(64), size, size)]

    def upload(self, client: int, rng: random.Random, peer: PeerProc, context: str, timeout: float) -> None:
        name = rng.choice(self.names)
        recipe = self.plan_content(rng)
        data = materialize(recipe)
        sha = hashlib.sha256(data).hexdigest()
        op = self.history.begin("upload", client, peer.index, name, context=context, sha256=sha, size=len(data))
        try:
            with peer.client(timeout=timeout) as c:
                up = c.upload(data, name=name)
        except DfsClientError as exc:
            self.history.finish(op, "error", error=error_name(exc))
            with self.lock:
                self.result.uploads[error_name(exc)] += 1
            if isinstance(exc, IntegrityError) and exc.code is None:
                self.fail(f"upload #{op.index} of {name} through peer{peer.index}: the peer stored other bytes: {exc}")
            return
        v = up.version
        if v.sha256 != sha or v.size != len(data):
            self.history.finish(op, "error", error="acknowledged with other content")
            self.fail(f"upload #{op.index} of {name} acknowledged as v{v.version} sha {v.sha256[:12]} size {v.size}, "
                      f"sent sha {sha[:12]} size {len(data)}")
            return
        self.history.finish(op, "ok", version=v.version)
        with self.lock:
            self.result.uploads["ok"] += 1
            self.acked.append((name, v.version))
            self.recipes.append(recipe)
            self.chunk_sizes.update(chunk_layout(data, self.cfg.chunk_size))

    def download(self, client: int, rng: random.Random, peer: PeerProc, context: str, timeout: float) -> None:
        with self.lock:
            name, version = rng.choice(self.acked)
        asked: int | None = version if rng.random() < 0.5 else None
        op = self.history.begin("download", client, peer.index, name, context=context, asked=asked)
        digest = hashlib.sha256()
        received = 0
        try:
            with peer.client(timeout=timeout) as c, c.iter_download(name, version=asked) as stream:
                served = stream.info.version
                for piece in stream:
                    digest.update(piece)
                    received += len(piece)
        except DfsClientError as exc:
            self.history.finish(op, "error", error=error_name(exc))
            with self.lock:
                self.result.downloads[error_name(exc)] += 1
            return
        self.history.finish(op, "ok", version=served, sha256=digest.hexdigest(), size=received)
        with self.lock:
            self.result.downloads["ok"] += 1

    # ---------------------------------------------------------------- fault lanes

    def scripted_lane(self) -> None:
        rng = random.Random(self.cfg.seed)
        self.stop.wait(rng.uniform(*self.cfg.gap_s) + 1.0)  # some versions exist before the first fault
        for kind, seconds in self.cfg.script:
            if self.stop.is_set():
                return
            budgets = BUDGETS.get(kind, ())
            self.take_slots(budgets, float("inf"))
            action = self.plan(kind, rng, seconds)
            if action is None:
                self.fail(f"scripted fault {kind} found nothing to act on")
                return
            action()
            self.after_fault()
            self.stop.wait(rng.uniform(*self.cfg.gap_s))

    def network_lane(self, end: float) -> None:
        rng = random.Random(self.cfg.seed)
        durations = {"split": (2.0, 12.0), "isolate": (2.0, 8.0), "asym": (3.0, 10.0), "cut": (2.0, 8.0),
                     "flap": (3.0, 10.0)}
        while not self.stop.wait(rng.uniform(*self.cfg.gap_s)) and time.monotonic() < end:
            kind = rng.choices(NETWORK_KINDS, weights=[3, 2, 2, 2, 2])[0]
            action = self.plan(kind, rng, min(rng.uniform(*durations[kind]), max(1.0, end - time.monotonic())))
            if action is not None:
                action()
                self.after_fault()

    def process_lane(self, end: float) -> None:
        cfg = self.cfg
        rng = random.Random(cfg.seed + 7)
        t0 = time.monotonic()
        due = sorted([(t0 + cfg.duration_s * rng.uniform(0.15, 0.5), "join") for _ in range(cfg.joins)]
                     + [(t0 + cfg.duration_s * rng.uniform(0.3, 0.75), "leave") for _ in range(cfg.leaves)])
        while not self.stop.wait(rng.uniform(2.0, 8.0)) and time.monotonic() < end:
            kind = due.pop(0)[1] if due and due[0][0] <= time.monotonic() else ""
            kind = kind or rng.choices(["kill", "pause", "corrupt"], weights=[3, 3, 2])[0]
            if not self.take_slots(BUDGETS[kind], end):
                return
            action = self.plan(kind, rng, rng.uniform(0.5, 6.0))
            if action is None:
                self.release_slots(BUDGETS[kind])
                continue
            thread = threading.Thread(target=self.guarded(f"fault {kind}", action), name=f"partition-{kind}",
                                      daemon=True)
            self.fault_threads.append(thread)
            thread.start()

    def take_slots(self, budgets: Sequence[str], end: float) -> bool:
        while not self.stop.is_set() and time.monotonic() < end:
            with self.lock:
                if all(self.slots[b] < self.cfg.replicas - 1 for b in budgets):
                    self.slots.update(budgets)
                    return True
            self.stop.wait(0.1)
        return False

    def release_slots(self, budgets: Sequence[str]) -> None:
        with self.lock:
            self.slots.subtract(budgets)

    def plan(self, kind: str, rng: random.Random, seconds: float) -> Callable[[], None] | None:
        """The fault with its victims chosen on the seeded RNG; None when there is nothing to act on."""
        peers = sorted(self.peers_up(), key=lambda p: p.index)
        ids = [p.index for p in peers]
        if kind == "join":
            return self.join
        if len(ids) < 2:
            return None
        # A partition divides every member, the ones a process fault has taken down for the moment
        # included: one restarted mid-split must come back on a side, never as a bridge between them.
        with self.lock:
            members = [p.index for p in self.cluster.peers if p.index not in self.gone and p.node_id]
        if kind == "split":
            rng.shuffle(ids)
            half = len(ids) // 2
            a, b = ids[:half], ids[half:]
            for index in members:
                if index not in ids:
                    (a if len(a) < len(b) else b).append(index)
            return lambda: self.split(sorted(a), sorted(b), seconds)
        victim = rng.choice(ids)
        if kind == "isolate":
            return lambda: self.split([victim], [i for i in members if i != victim], seconds, kind="isolate")
        if kind == "asym":
            other = rng.choice([i for i in ids if i != victim])
            return lambda: self.asym(victim, other, seconds)
        if kind == "cut":
            return lambda: self.cut(victim, seconds)
        if kind == "flap":
            return lambda: self.flap(victim, seconds, random.Random(rng.getrandbits(32)))
        peer = self.cluster.peers[victim]
        if kind == "corrupt":
            pick, run, where = rng.random(), rng.randint(1, 64), rng.random()
            return lambda: self.corrupt(peer, pick, run, where)
        if kind == "leave":
            if len(ids) <= self.cfg.min_peers:
                return None
            with self.lock:
                self.down.add(victim)
            return lambda: self.leave(peer)
        with self.lock:
            self.down.add(victim)
        if kind == "kill":
            return lambda: self.kill_restart(peer, seconds)
        return lambda: self.pause(peer, seconds)

    def after_fault(self) -> None:
        """Waits (bounded) until every peer up sees every other alive, so the next fault starts from a
        cluster that has noticed the heal; a cluster that does not converge is judged at the end."""
        try:
            self.wait_all_alive(15)
        except AssertionError as exc:
            self.event(f"not converged before the next fault: {exc}")

    def wait_all_alive(self, timeout: float) -> None:
        def alive() -> bool:
            peers = self.peers_up()
            ids = {p.node_id for p in peers}
            for p in peers:
                with p.client(timeout=3) as c:
                    seen = {m.node_id for m in c.status().members if m.state == "alive"}
                if not ids <= seen:
                    return False
            return True

        wait_for(alive, timeout, "every peer up sees every other alive")

    # ---------------------------------------------------------------- the faults

    def split(self, a: list[int], b: list[int], seconds: float, kind: str = "split") -> None:
        if kind == "isolate":
            sides = {a[0]: "lone", **{i: "rest" for i in b}}
        else:
            sides = {**{i: "A" for i in a}, **{i: "B" for i in b}}
        ep = self.begin_episode(kind, sides, f"{a}|{b}")
        try:
            self.network.split([a, b])
            self.stop.wait(seconds)
        finally:
            self.network.heal()
            self.end_episode(ep)

    def asym(self, reaching: int, cut_off: int, seconds: float) -> None:
        ep = self.begin_episode("asym", {reaching: "reaching", cut_off: "unreached"},
                                f"peer{reaching} reaches peer{cut_off}, not back")
        try:
            self.network.one_way(reaching, cut_off)
            self.stop.wait(seconds)
        finally:
            self.network.heal()
            self.end_episode(ep)

    def cut(self, victim: int, seconds: float) -> None:
        ep = self.begin_episode("cut", {victim: "cut off"}, f"peer{victim} link down")
        try:
            self.network.cut(victim)
            self.stop.wait(seconds)
        finally:
            self.network.heal()
            self.end_episode(ep)

    def flap(self, victim: int, seconds: float, rng: random.Random) -> None:
        ep = self.begin_episode("flap", {victim: "flapping"}, f"peer{victim}")
        try:
            flips = self.network.flap(victim, time.monotonic() + seconds, rng)
            ep.detail += f" down {flips} times"
        finally:
            self.network.heal()
            self.end_episode(ep)

    def kill_restart(self, peer: PeerProc, downtime: float) -> None:
        ep = self.begin_episode("kill", {peer.index: "down"}, f"SIGKILL peer{peer.index} for {downtime:.1f} s")
        try:
            peer.kill()
            self.stop.wait(downtime)
            self.cluster.restart(peer)
        finally:
            self.end_episode(ep)
            with self.lock:
                self.down.discard(peer.index)
            self.release_slots(BUDGETS["kill"])

    def pause(self, peer: PeerProc, seconds: float) -> None:
        ep = self.begin_episode("pause", {peer.index: "down"}, f"SIGSTOP peer{peer.index} for {seconds:.1f} s")
        try:
            peer.pause()
            self.stop.wait(seconds)
        finally:
            peer.resume()
            self.end_episode(ep)
            with self.lock:
                self.down.discard(peer.index)
            self.release_slots(BUDGETS["pause"])

    def join(self) -> None:
        ep = self.begin_episode("join", {}, "")
        peer = self.cluster.add_peer()
        ep.detail = f"peer{peer.index} on {peer.host.addr}" if isinstance(peer, NetnsPeer) else f"peer{peer.index}"
        self.result.peers_started += 1
        self.end_episode(ep)

    def leave(self, peer: PeerProc) -> None:
        held = self.held_chunks(peer)
        ep = self.begin_episode("leave", {peer.index: "down"}, f"peer{peer.index} SIGTERM, {len(held)} chunks held")
        with self.lock:
            self.gone.add(peer.index)
        try:
            try:
                code = peer.terminate()
            finally:
                self.end_episode(ep)
                self.release_slots(("down",))
            if code != 0:
                self.result.notes.append(f"peer{peer.index} exited with {code} after SIGTERM")
            self.hold_until_replicated(held, f"the {len(held)} chunks peer{peer.index} held")
        finally:
            self.release_slots(("loss",))

    def corrupt(self, peer: PeerProc, pick: float, run: int, where: float) -> None:
        try:
            held = self.held_chunks(peer)
            if not held:
                return
            chunk_id = held[int(pick * len(held))]
            if not flip_bytes(peer.chunk_path(chunk_id), run, where):
                return
            ep = self.begin_episode("corrupt", {}, f"{run} bytes of chunk {chunk_id[:12]} on peer{peer.index}")
            self.end_episode(ep)
            self.hold_until_replicated([chunk_id], f"corrupted chunk {chunk_id[:12]}", corrupt_at=peer)
        finally:
            self.release_slots(("loss",))

    def held_chunks(self, peer: PeerProc) -> list[str]:
        with self.lock:
            acked = set(self.chunk_sizes)
        return sorted(p.name for p in (peer.data_dir / "chunks").glob("*/*/*") if p.name in acked)

    def hold_until_replicated(self, chunk_ids: list[str], what: str, corrupt_at: PeerProc | None = None) -> None:
        """Keeps the caller's loss slot until each chunk has R intact copies on peers up (and the
        corrupted copy is gone or intact again), or until the run ends: the final checks judge the rest."""
        while not self.stop.is_set():
            peers = [p for p in self.cluster.peers if p.running and p.index not in self.gone]
            short = [c for c in chunk_ids
                     if sum(self.copies.state(p.chunk_path(c), c) is True for p in peers) < self.cfg.replicas]
            first = chunk_ids[0]
            bad = corrupt_at is not None and self.copies.state(corrupt_at.chunk_path(first), first) is False
            if not short and not bad:
                self.event(f"replicated again: {what}")
                return
            self.stop.wait(0.5)

    # ---------------------------------------------------------------- after the heal

    def after_heal(self) -> None:
        cfg = self.cfg
        episodes = [ep for ep in self.result.episodes if ep.end >= 0]
        heal = max((ep.end for ep in episodes), default=self.history.now())
        heal_mono = self.history.t0 + heal
        watcher = HealWatcher(self, heal_mono)
        thread = threading.Thread(target=self.guarded("heal watcher", watcher.run), name="heal-watcher", daemon=True)
        thread.start()
        try:
            self.cluster.wait_converged(timeout=cfg.convergence_bound_s + 60)
            self.result.convergence_s = time.monotonic() - heal_mono
            self.event(f"membership converged {self.result.convergence_s:.1f} s after the heal")
            if self.result.convergence_s > cfg.convergence_bound_s:
                self.fail(f"membership converged {self.result.convergence_s:.1f} s after the heal, "
                          f"bound {cfg.convergence_bound_s:g} s")
        except AssertionError as exc:
            self.fail(f"membership did not converge after the heal: {exc}")
        thread.join()
        self.judge_sides()
        self.count_hinted()
        final = self.final_observation()
        self.result.verdict = check(self.history.ops, final)

    def final_observation(self) -> Final:
        final = Final()
        peers = [p for p in self.cluster.peers if p.running and p.index not in self.gone]
        for p in peers:
            listing: dict[str, dict[int, tuple[str, int]]] = {}
            with p.client(timeout=60) as c:
                for latest in c.list(prefix="p/"):
                    listing[latest.name] = {v.version: (v.sha256, v.size) for v in c.versions(latest.name)}
            final.listings[p.index] = listing
        with self.lock:
            targets = sorted(set(self.acked))
        jobs = [(p, name, version) for p in peers for name, version in targets]

        def read(job: tuple[PeerProc, str, int]) -> FinalRead:
            peer, name, version = job
            digest = hashlib.sha256()
            size = 0
            try:
                with peer.client(timeout=60) as c, c.iter_download(name, version=version) as stream:
                    for piece in stream:
                        digest.update(piece)
                        size += len(piece)
            except DfsClientError as exc:
                return FinalRead(peer.index, name, version, False, error=error_name(exc))
            return FinalRead(peer.index, name, version, True, digest.hexdigest(), size)

        with ThreadPoolExecutor(max_workers=4) as pool:
            final.reads = list(pool.map(read, jobs))
        self.event(f"read {len(targets)} acknowledged versions through each of {len(peers)} peers")
        return final

    def judge_sides(self) -> None:
        """What each side of a partition can and cannot do (docs/ARCHITECTURE.md "Partitions"), judged on
        the calls that started once the fault had settled and ended before it healed, for every network
        fault no other fault overlapped."""
        cfg = self.cfg
        episodes = [ep for ep in self.result.episodes if ep.end >= 0]
        ops = self.history.finished()
        for ep in episodes:
            if ep.kind not in NETWORK_KINDS:
                continue
            others = [o for o in episodes if o is not ep and o.start < ep.end and (o.end < 0 or o.end > ep.start)
                      and o.kind != "corrupt"]
            if others:
                continue
            self.result.judged_episodes[ep.kind] += 1
            judged = [op for op in ops if op.start >= ep.start + cfg.settle_s and op.end <= ep.end]
            for op in judged:
                side = ep.sides.get(op.peer, "rest" if ep.kind in ("cut", "flap", "asym") else "?")
                fig = self.result.sides.setdefault((ep.kind, side), SideFigures())
                outcome = "ok" if op.ok else op.error
                (fig.uploads if op.kind == "upload" else fig.downloads)[outcome] += 1
                self.expect(ep, side, op)

    def expect(self, ep: Episode, side: str, op: Op) -> None:
        where = f"{ep.label()} side {side}: {op.kind} #{op.index} via peer{op.peer}"
        if ep.kind in ("cut",) and side == "cut off":
            if op.ok:
                self.fail(f"{where} succeeded though the peer's link was down")
            return
        if op.kind != "upload":
            if not op.ok and "DATA_LOSS" in op.error:  # copies across the cut are whole: retry, not loss
                self.fail(f"{where}: {op.error} though no copy was lost (UNAVAILABLE expected)")
            return
        if ep.kind == "isolate" and side == "lone":
            if op.ok or op.error != "ClusterUnavailable UNAVAILABLE":
                self.fail(f"{where}: expected ClusterUnavailable UNAVAILABLE (fewer than R peers on its side), "
                          f"got {op.error or 'an acknowledgement'}")
            return
        if ep.kind == "flap" and side == "flapping":
            return
        if not op.ok:  # every other side holds at least R peers: its uploads must be acknowledged
            self.fail(f"{where}: failed with {op.error} though its side holds at least R peers")

    def count_hinted(self) -> None:
        """Versions acknowledged on one side of a split were stored on that side alone: by stand-ins for
        every owner across the cut (on the ring all peers share after the heal)."""
        peers = [p for p in self.cluster.peers if p.running and p.index not in self.gone]
        by_id = {p.node_id: p.index for p in self.cluster.peers}
        with peers[0].client(timeout=10) as c:
            ring = ring_of(c.status())
        splits = [ep for ep in self.result.episodes if ep.kind == "split" and ep.end >= 0]
        for ep in splits:
            written = [op for op in self.history.acknowledged()
                       if op.start >= ep.start + self.cfg.settle_s and op.end <= ep.end]
            for op in written:
                side = ep.sides.get(op.peer)
                if side is None:  # through a peer that joined mid-split, on neither side: it reached both
                    continue
                with peers[0].client(timeout=10) as c:
                    info = c.info(op.name, version=op.version)
                for chunk in info.chunks:
                    holders = {by_id.get(n, -1) for n in chunk.peers}
                    if any(ep.sides.get(h, side) != side for h in holders):  # a peer on no side reaches both
                        self.fail(f"{ep.label()}: chunk {chunk.chunk_id[:12]} of {op.name} v{op.version}, written on "
                                  f"side {side}, is recorded on peers {sorted(holders)} across the cut")
                    owners = {by_id.get(n, -1) for n in ring.spread_owners(chunk.chunk_id, self.cfg.replicas)}
                    if any(ep.sides.get(o) != side for o in owners):
                        self.result.hinted += 1

    def save_episodes(self) -> None:
        try:
            with (self.base / "episodes.json").open("w") as fh:
                json.dump([dataclasses.asdict(ep) for ep in self.result.episodes], fh, indent=1)
        except OSError:
            pass


class HealWatcher:
    """From the heal until no copy beyond the policy is left: samples every live peer's disk and the
    ring, times full redundancy and the clean-up, and checks that a copy on a non-owner disappears only
    once every owner holds an intact copy."""

    def __init__(self, run: PartitionRun, heal_mono: float) -> None:
        self.run_ = run
        self.heal = heal_mono
        with run.lock:
            self.sizes = dict(run.chunk_sizes)
        self.held_bytes = sum(self.sizes.values()) * run.cfg.replicas
        self.bound = run.cfg.redundancy_bound(self.held_bytes)
        run.result.held_bytes = self.held_bytes
        run.result.redundancy_bound_s = self.bound
        self.reported: set[str] = set()

    def run(self) -> None:
        run, result = self.run_, self.run_.result
        chunks = sorted(self.sizes)
        prev: dict[tuple[str, int], bool] | None = None
        give_up = self.heal + self.bound + 30
        peers: list[PeerProc] = []
        while time.monotonic() < give_up:
            peers = [p for p in run.cluster.peers if p.running and p.index not in run.gone]
            ring = self.agreed_ring(peers)
            if ring is None:
                prev = None  # a judgement needs two samples on one agreed ring
                time.sleep(0.25)
                continue
            by_id = {p.node_id: p.index for p in peers}
            owners = {c: [by_id.get(n, -1) for n in ring.spread_owners(c, run.cfg.replicas)] for c in chunks}
            copies = self.sample(peers, chunks, owners)
            result.samples += 1
            self.judge(prev, copies, owners)
            redundant = all(copies.get((c, o), False) for c in chunks for o in owners[c])
            clean = redundant and not any(held and p not in owners[c] for (c, p), held in copies.items())
            if redundant and result.redundancy_s is None:
                result.redundancy_s = time.monotonic() - self.heal
                run.event(f"every owner holds its copies {result.redundancy_s:.1f} s after the heal")
            if clean and self.confirmed():
                result.cleanup_s = time.monotonic() - self.heal
                if result.redundancy_s is None:
                    result.redundancy_s = result.cleanup_s
                run.event(f"no copy beyond the policy left {result.cleanup_s:.1f} s after the heal")
                break
            prev = copies
            time.sleep(0.25)
        if result.cleanup_s is None or result.cleanup_s > self.bound:
            run.fail(f"full redundancy (every owner's copy, none beyond the policy) not within {self.bound:.0f} s "
                     f"of the heal: {self.last_report()}")

    def sample(self, peers: list[PeerProc], chunks: list[str],
               owners: dict[str, list[int]]) -> dict[tuple[str, int], bool]:
        """Which peer holds an intact copy of which chunk. Non-owners are read before owners: a copy
        handed over and then dropped between two reads is then seen at the owner, never missed at both."""
        copies: dict[tuple[str, int], bool] = {}
        for owner_pass in (False, True):
            for c in chunks:
                for p in peers:
                    if (p.index in owners[c]) == owner_pass:
                        copies[(c, p.index)] = self.run_.copies.state(p.chunk_path(c), c) is True
        return copies

    def agreed_ring(self, peers: list[PeerProc]) -> HashRing | None:
        """The ring every live peer reports (by digest), or None while they disagree or one is silent."""
        statuses = []
        try:
            for p in peers:
                with p.client(timeout=3) as c:
                    statuses.append(c.status())
        except DfsClientError:
            return None
        ring = ring_of(statuses[0])
        ids = {p.node_id for p in peers}
        if {s.ring_digest for s in statuses} != {ring.digest} or set(ring.nodes) != ids:
            return None
        return ring

    def judge(self, prev: dict[tuple[str, int], bool] | None, copies: dict[tuple[str, int], bool],
              owners: dict[str, list[int]]) -> None:
        run, result = self.run_, self.run_.result
        peers = {p for _, p in copies}
        for chunk in owners:
            if chunk not in self.reported and not any(copies.get((chunk, p), False) for p in peers):
                self.reported.add(chunk)
                run.fail(f"chunk {chunk[:12]} of an acknowledged version has no intact copy on any peer")
        if prev is None:
            return
        for (chunk, peer), held in copies.items():
            before = prev.get((chunk, peer))
            if before is None:
                continue
            if held and not before and peer in owners[chunk]:
                result.handed_back += 1
            if before and not held and peer not in owners[chunk]:
                result.extra_removed += 1
                lacking = [o for o in owners[chunk] if not copies.get((chunk, o), False)]
                if lacking:
                    run.fail(f"the copy of chunk {chunk[:12]} on peer{peer} (not an owner) was removed while "
                             f"owners {lacking} held none")

    def confirmed(self) -> bool:
        """The independent check of tests/replication.py, over every version the metadata lists."""
        try:
            return placement_report(self.run_.cluster, self.run_.cfg.replicas).fully_replicated
        except Exception:  # noqa: BLE001 - a peer not answering yet is "not yet"
            return False

    def last_report(self) -> str:
        try:
            return placement_report(self.run_.cluster, self.run_.cfg.replicas).describe()
        except Exception as exc:  # noqa: BLE001 - only a message
            return f"placement report failed: {exc}"


def run_partitions(base: Path, cfg: PartitionConfig) -> PartitionResult:
    """One partition run with its peers under `base`; never raises for a failed check."""
    base.mkdir(parents=True, exist_ok=True)
    return PartitionRun(base, cfg).run()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.netns_run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true",
                        help=f"the long run: {LONG.duration_s:g} s of random faults in two lanes, "
                             f"{LONG.joins} joins and {LONG.leaves} leaves")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--duration", type=float, help="seconds of random faults (implies the random lanes)")
    parser.add_argument("--dir", default=None, help="parent of the run's directory (default: system tmp)")
    parser.add_argument("--keep", action="store_true", help="keep peer data, logs and the history even on success")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from tests.netns import netns_problem

    args = _parse(argv)
    problem = netns_problem()
    if problem:
        print(f"python -m tests.netns_run: {problem}", file=sys.stderr)
        return 2
    cfg = LONG if args.long else BOUNDED
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    if args.duration is not None:
        cfg = dataclasses.replace(cfg, duration_s=args.duration, script=())
    base = Path(tempfile.mkdtemp(prefix="dfs-partitions-", dir=args.dir))
    result = run_partitions(base, cfg)
    print(result.summary(), flush=True)
    if not result.ok:
        print(result.logs)
    if result.ok and not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"peer data, logs, history.jsonl and episodes.json kept in {base}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
