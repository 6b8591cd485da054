"""Placement as the disks of a process cluster show it: does every chunk of every live version have R
intact copies on its owners under the current ring, and nothing left where it does not belong?

The ring is rebuilt here from the members a live peer reports on the ring (HashRing.build of their ids and zones,
with the cluster's vnodes), so the check is independent of the peers' own repair bookkeeping. Only the
disks of running peers count: a killed peer's files are not copies anyone can read.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from client.models import ClusterStatus
from peer.ring.hashring import HashRing
from tests.cluster import Cluster, PeerProc
from tests.waiting import wait_until_sync


@dataclass
class Report:
    """What the disks held at one moment. Copies are (chunk_id, node_id) pairs."""

    total: int = 0
    """Distinct chunks referenced by live versions."""
    ring: tuple[str, ...] = ()
    """Node ids on the ring the report was checked against."""
    ring_digests: set[str] = field(default_factory=set)
    """Ring digests the live peers reported; one, equal to `expected_digest`, once they agree."""
    expected_digest: str = ""
    under_replicated: list[str] = field(default_factory=list)
    """Chunks with fewer than R intact copies on their owners."""
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    """Copies whose bytes do not hash to the chunk id."""
    misplaced: list[tuple[str, str]] = field(default_factory=list)
    """Copies held by live peers that do not own the chunk."""
    owners: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """The owners of every referenced chunk under `ring`."""

    @property
    def ring_agreed(self) -> bool:
        return self.ring_digests == {self.expected_digest}

    @property
    def fully_replicated(self) -> bool:
        return self.ring_agreed and not (self.under_replicated or self.corrupt or self.misplaced)

    def held_by(self, node_id: str) -> list[str]:
        """The chunks `node_id` owns under the report's ring."""
        return [c for c, owners in self.owners.items() if node_id in owners]

    def describe(self) -> str:
        return (
            f"{self.total} chunks on a ring of {len(self.ring)}; digests {sorted(self.ring_digests)} "
            f"(expected {self.expected_digest}); under-replicated {len(self.under_replicated)} "
            f"{_short(self.under_replicated)}; corrupt {_pairs(self.corrupt)}; misplaced {_pairs(self.misplaced)}"
        )


def _short(ids: list[str], limit: int = 4) -> str:
    return "[" + ", ".join(i[:12] for i in ids[:limit]) + (", ..." if len(ids) > limit else "") + "]"


def _pairs(pairs: list[tuple[str, str]], limit: int = 4) -> str:
    shown = ", ".join(f"{c[:12]}@{n[:8]}" for c, n in pairs[:limit])
    return f"{len(pairs)} [{shown}{', ...' if len(pairs) > limit else ''}]"


def intact(path: Path, chunk_id: str) -> bool | None:
    """True for an intact copy, False for a corrupt one, None when there is no file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return hashlib.sha256(data).hexdigest() == chunk_id


def referenced_chunks(peer: PeerProc) -> set[str]:
    """Every chunk id that some live version of some file references, as `peer` lists them."""
    chunks: set[str] = set()
    with peer.client(timeout=10) as c:
        for latest in c.list():
            for version in c.versions(latest.file_id):
                info = c.stat(latest.file_id, version=version.version)
                chunks.update(ch.chunk_id for ch in info.chunks)
    return chunks


def ring_of(status: ClusterStatus) -> HashRing:
    """The ring of the members `status` reports on the ring, in the zones it reports them in."""
    on_ring = [m for m in status.members if m.on_ring]
    return HashRing.build([m.node_id for m in on_ring], status.vnodes, {m.node_id: m.zone for m in on_ring})


def placement_report(cluster: Cluster, replicas: int) -> Report:
    live = cluster.live()
    if not live:
        raise AssertionError("no live peer to ask")
    statuses: dict[str, ClusterStatus] = {}
    for p in live:
        with p.client(timeout=3) as c:
            statuses[p.node_id] = c.status()
    ring = ring_of(statuses[live[0].node_id])
    report = Report(
        ring=ring.nodes,
        ring_digests={s.ring_digest for s in statuses.values()},
        expected_digest=ring.digest,
    )
    chunks = referenced_chunks(live[0])
    report.total = len(chunks)
    by_id = {p.node_id: p for p in live}
    for chunk_id in sorted(chunks):
        owners = ring.spread_owners(chunk_id, replicas)
        report.owners[chunk_id] = owners
        healthy = 0
        for node_id, peer in by_id.items():
            state = intact(peer.chunk_path(chunk_id), chunk_id)
            if state is None:
                continue
            if not state:
                report.corrupt.append((chunk_id, node_id))
            elif node_id in owners:
                healthy += 1
            if node_id not in owners:
                report.misplaced.append((chunk_id, node_id))
        if healthy < replicas:
            report.under_replicated.append(chunk_id)
    return report


def wait_fully_replicated(cluster: Cluster, replicas: int, timeout: float) -> float:
    """Waits until every live peer reports the same ring and every chunk has exactly its R owners'
    intact copies (no corrupt or misplaced copy on a live peer); returns the seconds it took."""
    started = time.monotonic()
    last = ["no report yet"]

    def done() -> bool:
        try:
            report = placement_report(cluster, replicas)
        except Exception as exc:  # noqa: BLE001 - a peer not answering yet is "not yet"
            last[0] = f"report failed: {exc}"
            return False
        last[0] = report.describe()
        return report.fully_replicated

    # Each report hashes every owner's copy, so poll gently to leave the CPU to the peers' repair work.
    wait_until_sync(done, timeout, interval=0.2, describe=lambda: f"full replication; {last[0]}")
    return time.monotonic() - started
