"""The operation history of a fault run, and the checker that judges it once the faults have healed.

Every client call is one `Op` (as in a Jepsen history): when it started and ended on the test's
monotonic clock, through which peer, on which name, what happened, and the SHA-256 of the bytes it
carried (sent by an upload, received by a download). An upload that raised is not acknowledged, but
it may still have committed (the reply may have been what was lost), so the checker treats its
content as a version that may or may not exist, never as one that must.

After the heal, `check(history, final)` compares the history with what the cluster then says
(`Final`: every version each peer lists, and a download of every acknowledged version through every
peer) and reports four properties:

1. Durability. Every acknowledged version is listed with the SHA-256 it was acknowledged with and
   downloads byte-identical through every peer ("lost" counts the acknowledged versions that fail this).
2. Numbering. No two acknowledged uploads got one version number of a name; the numbers a name has
   are 1..N with none missing; and an upload that started after another of the same name was
   acknowledged got a higher number (commit order follows real time).
3. No stale reads. A download of a name's latest version that started after an upload of that name
   was acknowledged reports that version or a newer one; a download of a given version reports it.
4. No wrong bytes. Every download that succeeded returned the bytes of a version committed under the
   number it reported, and those bytes are what some upload of that name sent.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

OpKind = Literal["upload", "download"]

MAX_PROBLEMS_LISTED = 25


@dataclass
class Op:
    index: int
    kind: OpKind
    client: int
    peer: int
    """Index of the peer the client called."""
    name: str
    start: float
    """Seconds since the history began (monotonic)."""
    end: float = -1.0
    outcome: str = "pending"
    """"ok", or "error" (the call raised: for an upload, committed or not is unknown)."""
    error: str = ""
    """The SDK error class and gRPC status code, e.g. "ClusterUnavailable UNAVAILABLE"."""
    asked: int | None = None
    """The version a download asked for; None asks for the latest."""
    version: int | None = None
    """The version an upload was acknowledged as, or a download reported."""
    sha256: str = ""
    """Upload: of the bytes sent. Download: of the bytes received (when it succeeded)."""
    size: int = 0
    context: str = ""
    """The faults in place when the call started, and the side of its peer."""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def duration(self) -> float:
        return self.end - self.start


class History:
    """Thread-safe recorder; optionally appends every finished op to a JSON-lines file."""

    def __init__(self, path: Path | None = None) -> None:
        self.t0 = time.monotonic()
        self.ops: list[Op] = []
        self._lock = threading.Lock()
        self._file = path.open("a") if path is not None else None

    def now(self) -> float:
        return time.monotonic() - self.t0

    def begin(self, kind: OpKind, client: int, peer: int, name: str, *, context: str = "",
              sha256: str = "", size: int = 0, asked: int | None = None) -> Op:
        with self._lock:
            op = Op(len(self.ops), kind, client, peer, name, self.now(), sha256=sha256, size=size, asked=asked,
                    context=context)
            self.ops.append(op)
        return op

    def finish(self, op: Op, outcome: str, *, error: str = "", version: int | None = None, sha256: str | None = None,
               size: int | None = None) -> Op:
        op.end = self.now()
        op.outcome, op.error, op.version = outcome, error, version
        if sha256 is not None:
            op.sha256 = sha256
        if size is not None:
            op.size = size
        if self._file is not None:
            with self._lock:
                self._file.write(json.dumps(asdict(op)) + "\n")
                self._file.flush()
        return op

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def finished(self) -> list[Op]:
        with self._lock:
            return [op for op in self.ops if op.end >= 0]

    def acknowledged(self) -> list[Op]:
        return [op for op in self.finished() if op.kind == "upload" and op.ok]


@dataclass(frozen=True)
class FinalRead:
    """One download of an acknowledged version after the heal, through one peer."""

    peer: int
    name: str
    version: int
    ok: bool
    sha256: str = ""
    size: int = 0
    error: str = ""


@dataclass
class Final:
    """What the healed cluster says: each peer's listing, and the reads of every acknowledged version."""

    listings: dict[int, dict[str, dict[int, tuple[str, int]]]] = field(default_factory=dict)
    """peer index -> name -> version number -> (SHA-256, size)."""
    reads: list[FinalRead] = field(default_factory=list)


@dataclass
class Verdict:
    acknowledged: int = 0
    lost: int = 0
    """Acknowledged versions not listed as acknowledged, or not downloaded byte-identical through some peer."""
    wrong_reads: int = 0
    """Successful downloads (during the run or after) whose bytes are not the committed version's."""
    stale_reads: int = 0
    order_violations: int = 0
    duplicated: int = 0
    skipped: int = 0
    phantom: int = 0
    """Listed versions whose bytes no upload of that name sent."""
    committed_unacknowledged: int = 0
    """Uploads that raised but whose version exists: allowed (the reply was lost, not the write)."""
    listings_disagree: int = 0
    downloads_ok: int = 0
    final_reads: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.wrong_reads or self.stale_reads or self.order_violations or self.duplicated
                    or self.skipped or self.phantom or self.listings_disagree)

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS_LISTED:
            self.problems.append(text)

    def describe(self) -> str:
        return (f"{self.acknowledged} acknowledged, {self.lost} lost, {self.wrong_reads} wrong reads, "
                f"{self.stale_reads} stale reads, {self.order_violations} out of commit order, "
                f"{self.duplicated} duplicated, {self.skipped} skipped, {self.phantom} phantom, "
                f"{self.committed_unacknowledged} committed without acknowledgement; "
                f"{self.downloads_ok} downloads during the run and {self.final_reads} after it checked")


def _op(op: Op) -> str:
    what = f"v{op.version}" if op.version is not None else op.error or op.outcome
    return f"#{op.index} {op.kind} {op.name} via peer{op.peer} [{op.start:.2f}-{op.end:.2f}] {what}"


def check(ops: Iterable[Op], final: Final) -> Verdict:
    """Judges a finished history against the healed cluster; see the module docstring."""
    ops = [op for op in ops if op.end >= 0]
    verdict = Verdict()
    listing = _agreed_listing(final, verdict)
    uploads = [op for op in ops if op.kind == "upload"]
    acked = [op for op in uploads if op.ok]
    verdict.acknowledged = len(acked)
    sent: dict[str, set[str]] = defaultdict(set)
    for op in uploads:
        sent[op.name].add(op.sha256)
    _check_durable(acked, listing, final.reads, verdict)
    _check_numbering(uploads, acked, listing, sent, verdict)
    _check_reads(ops, acked, listing, verdict)
    return verdict


def _agreed_listing(final: Final, verdict: Verdict) -> dict[str, dict[int, tuple[str, int]]]:
    """The listing every peer gives (they share one metadata store, so any difference is a fault)."""
    if not final.listings:
        verdict.listings_disagree += 1
        verdict.problem("no peer listed the files after the heal")
        return {}
    peers = sorted(final.listings)
    first = final.listings[peers[0]]
    for peer in peers[1:]:
        if final.listings[peer] != first:
            verdict.listings_disagree += 1
            verdict.problem(f"peer{peer} lists other versions than peer{peers[0]}")
    return first


def _check_durable(acked: list[Op], listing: dict[str, dict[int, tuple[str, int]]], reads: list[FinalRead],
                   verdict: Verdict) -> None:
    by_version: dict[tuple[str, int], list[FinalRead]] = defaultdict(list)
    for r in reads:
        by_version[(r.name, r.version)].append(r)
    peers = {r.peer for r in reads}
    verdict.final_reads = len(reads)
    for op in acked:
        assert op.version is not None
        listed = listing.get(op.name, {}).get(op.version)
        if listed != (op.sha256, op.size):
            verdict.lost += 1
            verdict.problem(f"{_op(op)} is listed as {listed}, acknowledged ({op.sha256[:12]}, {op.size})")
            continue
        got = by_version.get((op.name, op.version), [])
        bad = [r for r in got if not (r.ok and r.sha256 == op.sha256 and r.size == op.size)]
        missing = peers - {r.peer for r in got}
        if bad or missing:
            verdict.lost += 1
            detail = "; ".join(f"peer{r.peer}: {r.error or f'sha {r.sha256[:12]} size {r.size}'}" for r in bad[:3])
            verdict.problem(f"{_op(op)} not byte-identical through every peer: {detail} not read via {sorted(missing)}")


def _check_numbering(uploads: list[Op], acked: list[Op], listing: dict[str, dict[int, tuple[str, int]]],
                     sent: dict[str, set[str]], verdict: Verdict) -> None:
    by_name: dict[str, list[Op]] = defaultdict(list)
    for op in acked:
        by_name[op.name].append(op)
    for group in by_name.values():
        seen: dict[int, Op] = {}
        for op in group:
            assert op.version is not None
            if op.version in seen:
                verdict.duplicated += 1
                verdict.problem(f"{_op(op)} and {_op(seen[op.version])} were acknowledged with one number")
            seen[op.version] = op
        # Commit order follows real time: an upload that began after another's acknowledgement got more.
        for later in group:
            for earlier in group:
                assert later.version is not None and earlier.version is not None
                if earlier.end < later.start and later.version <= earlier.version:
                    verdict.order_violations += 1
                    verdict.problem(f"{_op(later)} began after {_op(earlier)} was acknowledged, got no higher number")
    acked_keys = {(op.name, op.version) for op in acked}
    failed_sent: dict[str, set[str]] = defaultdict(set)
    for op in uploads:
        if not op.ok:
            failed_sent[op.name].add(op.sha256)
    for name, versions in listing.items():
        numbers = sorted(versions)
        gaps = sorted(set(range(1, numbers[-1] + 1)) - set(numbers)) if numbers else []
        if gaps:
            verdict.skipped += len(gaps)
            verdict.problem(f"{name}: version numbers {gaps} are missing from 1..{numbers[-1]}")
        for number, (sha, _size) in versions.items():
            if sha not in sent.get(name, set()):
                verdict.phantom += 1
                verdict.problem(f"{name} v{number} holds bytes (sha {sha[:12]}) no upload of that name sent")
            elif (name, number) not in acked_keys and sha in failed_sent.get(name, set()):
                verdict.committed_unacknowledged += 1


def _check_reads(ops: list[Op], acked: list[Op], listing: dict[str, dict[int, tuple[str, int]]],
                 verdict: Verdict) -> None:
    # Per name: acknowledged uploads by end time, with the highest number acknowledged by then.
    ends: dict[str, list[float]] = defaultdict(list)
    best: dict[str, list[int]] = defaultdict(list)
    for op in sorted(acked, key=lambda o: o.end):
        assert op.version is not None
        ends[op.name].append(op.end)
        best[op.name].append(max(op.version, best[op.name][-1] if best[op.name] else 0))
    for op in ops:
        if op.kind != "download":
            continue
        if op.error.startswith("IntegrityError local"):  # the SDK caught bytes that were not the version's
            verdict.wrong_reads += 1
            verdict.problem(f"{_op(op)}: the peer sent bytes that did not match the version")
            continue
        if op.error.startswith("NotFoundError"):
            i = bisect.bisect_left(ends[op.name], op.start)
            if i and (op.asked is None or op.asked <= best[op.name][i - 1]):
                verdict.stale_reads += 1
                verdict.problem(f"{_op(op)}: not found, though acknowledged before the read began")
            continue
        if not op.ok:
            continue
        verdict.downloads_ok += 1
        listed = listing.get(op.name, {}).get(op.version) if op.version is not None else None
        if listed is None or listed != (op.sha256, op.size):
            verdict.wrong_reads += 1
            verdict.problem(f"{_op(op)} returned ({op.sha256[:12]}, {op.size}), committed {listed}")
            continue
        if op.asked is not None:
            if op.version != op.asked:
                verdict.stale_reads += 1
                verdict.problem(f"{_op(op)} asked for v{op.asked}")
            continue
        i = bisect.bisect_left(ends[op.name], op.start)  # acknowledgements strictly before the read began
        floor = best[op.name][i - 1] if i else 0
        if op.version is not None and op.version < floor:
            verdict.stale_reads += 1
            verdict.problem(f"{_op(op)} is older than v{floor}, acknowledged before it began")
