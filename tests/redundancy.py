"""Placement by policy as the disks of a process cluster show it: is every piece of every live version
intact on the peers that must hold it under the current ring?

tests/replication.py answers that for copies, where every chunk has R owners. A version stored under
`ec:K+M` keeps no copy of its chunks: fragment i, a file named by its own SHA-256, belongs to owner i
of its chunk alone. So the unit checked here is the stored id (a copied chunk, or one fragment), and
who must hold it comes from the version records: the R owners of a chunk under `rep:R` (the widest R
when versions of several policies share it), owner i for fragment i. As in tests/replication.py, the
ring is rebuilt from the members a live peer reports, and only the disks of running peers count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from client.models import VersionInfo
from peer.ring.hashring import HashRing
from peer.ring.policy import Policy
from tests.cluster import Cluster, PeerProc
from tests.replication import Report, intact, ring_of


@dataclass(frozen=True)
class Stored:
    """One chunk of a version as the peers store it: copies of `chunk_id`, or its `fragments` (ids in
    index order) when `policy` is erasure-coded."""

    policy: Policy
    chunk_id: str
    fragments: tuple[str, ...] = ()

    @property
    def ids(self) -> tuple[str, ...]:
        """The files that hold this chunk on the peers' disks."""
        return self.fragments if self.policy.erasure_coded else (self.chunk_id,)


def stored_of(version: VersionInfo, default: Policy) -> tuple[Stored, ...]:
    """The chunks of a version record that carries its chunks (stat, upload); a record without a
    policy predates them and is stored under the cluster's `default`."""
    policy = Policy.parse(version.policy) if version.policy else default
    return tuple(Stored(policy, c.chunk_id, tuple(c.fragments)) for c in version.chunks)


def expected_holders(ring: HashRing, stored: Iterable[Stored]) -> dict[str, set[str]]:
    """Stored id -> the peers that must hold it intact under `ring`. A ring narrower than a policy
    leaves the last fragments without an owner: their set is empty, and `short_ring` says so."""
    holders: dict[str, set[str]] = {}
    for s in stored:
        owners = ring.spread_owners(s.chunk_id, s.policy.width)
        if s.policy.erasure_coded:
            for index, fragment in enumerate(s.fragments):
                holders.setdefault(fragment, set()).update(owners[index : index + 1])
        else:
            holders.setdefault(s.chunk_id, set()).update(owners)
    return holders


def short_ring(ring: HashRing, stored: Iterable[Stored]) -> str:
    """Why `ring` cannot place every piece of `stored` on its own peer, or ""."""
    width = max((s.policy.width for s in stored), default=0)
    return f"a ring of {len(ring)} peers is narrower than a policy of width {width}" if len(ring) < width else ""


def referenced_stored(peer: PeerProc, default: Policy) -> list[Stored]:
    """Every chunk of every live version, as `peer` lists them."""
    stored: dict[tuple[str, str], Stored] = {}
    with peer.client(timeout=10) as c:
        for latest in c.list():
            for version in c.versions(latest.file_id):
                for s in stored_of(c.stat(latest.file_id, version=version.version), default):
                    stored[(str(s.policy), s.chunk_id)] = s
    return list(stored.values())


def redundancy_report(cluster: Cluster, default: Policy) -> Report:
    """tests/replication.py's placement_report for versions of any policy, uncached: its entries are
    stored ids, so `total` counts pieces (copied chunks and fragments) and a fragment is
    under-replicated when its one owner lacks an intact copy."""
    live = cluster.live()
    if not live:
        raise AssertionError("no live peer to ask")
    statuses = {}
    for p in live:
        with p.client(timeout=3) as c:
            statuses[p.node_id] = c.status()
    ring = ring_of(statuses[live[0].node_id])
    report = Report(ring=ring.nodes, ring_digests={s.ring_digest for s in statuses.values()},
                    expected_digest=ring.digest)
    stored = referenced_stored(live[0], default)
    holders = expected_holders(ring, stored)
    report.total = len(holders)
    for stored_id, owners in sorted(holders.items()):
        report.owners[stored_id] = tuple(sorted(owners))
        healthy = 0
        for peer in live:
            state = intact(peer.chunk_path(stored_id), stored_id)
            if state is None:
                continue
            if not state:
                report.corrupt.append((stored_id, peer.node_id))
            elif peer.node_id in owners:
                healthy += 1
            if peer.node_id not in owners:
                report.misplaced.append((stored_id, peer.node_id))
        if not owners or healthy < len(owners):
            report.under_replicated.append(stored_id)
    return report
