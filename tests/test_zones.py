"""Zones end to end: `--zone` checked at start, gossiped and shown by `dfs status`, the ring rebuilt when a
member comes back in another zone, and real peers in two zones keeping one copy of every chunk in each,
so that losing a whole zone loses no file. With three zones of two peers, losing any one zone loses no
file either; and a zone added to a running cluster takes its share of the chunks while every file stays
readable throughout the move."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from hashlib import sha256
from pathlib import Path

import pytest

from client.format import cluster_details
from client.models import ChunkPlacement, ClusterStatus, MemberStatus
from peer.clock import ManualClock
from peer.config import PeerConfig
from peer.errors import ConfigError
from peer.membership.state import Entry, MembershipView
from peer.node import LiveCluster
from peer.ring.hashring import HashRing
from peer.ring.policy import Policy
from tests.cluster import Cluster, PeerProc, wait_for
from tests.replication import intact, ring_of, wait_fully_replicated

MIB = 1024 * 1024
DFS = Path(sys.executable).parent / "dfs"
ZONE_OF_PEER = "aabb"  # peer index -> zone: two zones of two peers
THREE_ZONES = "aabbcc"  # peer index -> zone: two peers in each of zones a, b and c


# --------------------------------------------------------------------------------- settings and status


@pytest.mark.parametrize("zone", ["eu west", "a/b", "z" * 33, "é", "rack\n1"])
def test_a_zone_that_breaks_the_rule_is_refused_naming_the_setting(tmp_path: Path, zone: str) -> None:
    with pytest.raises(ConfigError, match="DFS_ZONE .* is invalid: at most 32 characters"):
        PeerConfig.local(tmp_path, zone=zone).validate()


def test_a_valid_zone_or_none_is_accepted(tmp_path: Path) -> None:
    assert PeerConfig.local(tmp_path, zone="eu-west.1_a").validate().zone == "eu-west.1_a"
    assert PeerConfig.local(tmp_path).validate().zone == ""


def test_the_peer_command_refuses_a_bad_zone_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFS_")}
    run = subprocess.run(
        [sys.executable, "-m", "peer", "serve", "--data-dir", str(tmp_path / "d"), "--no-auth", "--zone", "eu west"],
        capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=60, check=False,
    )
    assert run.returncode == 2
    assert run.stderr.decode().splitlines() == [
        "dfs-peer: error: DFS_ZONE 'eu west' is invalid: at most 32 characters of letters, digits, '.', '_' or '-'"
    ]


def test_the_zone_is_read_from_dfs_zone(tmp_path: Path) -> None:
    """Containers set DFS_ZONE; the variable reaches the peer as --zone does (a bad one refused by name)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFS_")} | {"DFS_ZONE": "rack 9"}
    run = subprocess.run(
        [sys.executable, "-m", "peer", "serve", "--data-dir", str(tmp_path / "d"), "--no-auth"],
        capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=60, check=False,
    )
    assert run.returncode == 2
    assert "DFS_ZONE 'rack 9' is invalid" in run.stderr.decode()


def test_dfs_status_shows_each_members_zone() -> None:
    members = [MemberStatus("a" * 32, "alive", grpc_addr="h:1", zone="rack-1"),
               MemberStatus("b" * 32, "alive", grpc_addr="h:2")]
    status = ClusterStatus(node_id="a" * 32, ring_digest="d", replicas=2, members=members)
    lines = cluster_details(status).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("NODE") and "GRPC" in line)
    assert lines[header].split()[:4] == ["NODE", "STATE", "ZONE", "GRPC"]
    assert lines[header + 1].split()[:5] == ["a" * 12, "*", "alive", "rack-1", "h:1"]
    assert lines[header + 2].split()[:4] == ["b" * 12, "alive", "-", "h:2"]  # no zone: the unnamed one
    assert [m["zone"] for m in status.to_dict()["members"]] == ["rack-1", ""]


def test_the_ring_follows_a_member_that_comes_back_in_another_zone() -> None:
    clock = ManualClock()
    view = MembershipView("a", "a:1", "a:2", incarnation=1, now=clock.monotonic(), suspect_timeout_s=3.0,
                          dead_timeout_s=6.0, zone="x")
    cluster = LiveCluster("a", view, 16, 60.0, clock, Policy.replication(2))
    rebuilds: list[str] = []
    cluster.on_change = lambda: rebuilds.append(cluster.ring.digest)
    view.merge([Entry("b", "b:1", "b:2", 1, 1, "alive", 0, 0, "", "y")], clock.monotonic())
    cluster.refresh()
    assert dict(cluster.ring.zones) == {"a": "x", "b": "y"} and len(rebuilds) == 1
    cluster.refresh()
    assert len(rebuilds) == 1  # nothing changed: the ring is kept
    view.merge([Entry("b", "b:1", "b:2", 2, 1, "alive", 0, 0, "", "x")], clock.monotonic())  # restarted in x
    cluster.refresh()
    assert cluster.ring.zone_of("b") == "x" and len(rebuilds) == 2 and rebuilds[0] != rebuilds[1]
    assert cluster.placement.pinned().ring.digest == rebuilds[1]


# ------------------------------------------------------------------------------------------ real peers


@pytest.fixture
def two_zones(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Four peers under rep:2: peers 0 and 1 in zone a, 2 and 3 in zone b; repair rounds every 0.5 s."""
    cluster = Cluster(tmp_path / "zones", replicas=2, extra=["--repair-interval", "0.5"],
                      per_peer=lambda index: ["--zone", ZONE_OF_PEER[index]])
    try:
        yield cluster.start(4)
    finally:
        cluster.close()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(cluster.tail_logs())


def sees_zones(peer: PeerProc, expected: dict[str, str]) -> bool:
    """Whether `peer`'s status lists exactly these members alive, each in its zone."""
    with peer.client(timeout=5) as c:
        return {m.node_id: m.zone for m in c.status().members if m.state == "alive"} == expected


def test_every_chunk_has_a_copy_in_each_zone_and_losing_a_zone_loses_no_file(two_zones: Cluster) -> None:
    cluster = two_zones
    expected = {p.node_id: ZONE_OF_PEER[p.index] for p in cluster.peers}
    for peer in cluster.peers:
        wait_for(partial(sees_zones, peer, expected), 10, f"peer{peer.index} sees every zone")
    doc = json.loads(subprocess.run([str(DFS), "--peer", cluster.peers[3].grpc_addr, "--json", "status"],
                                    capture_output=True, timeout=60, check=True).stdout)
    assert {m["node_id"]: m["zone"] for m in doc["members"]} == expected

    files = {f"zones/{size}.bin": os.urandom(size) for size in (1, MIB, 5 * MIB + 7, 8 * MIB)}
    with cluster.peers[0].client() as c:
        for name, data in files.items():
            c.upload(data, name=name)
        chunks = [chunk for name in files for chunk in c.info(name).chunks]
    assert len(chunks) == 1 + 1 + 6 + 8
    for chunk in chunks:
        assert sorted(expected[node_id] for node_id in chunk.peers) == ["a", "b"], chunk

    for peer in cluster.peers:
        if ZONE_OF_PEER[peer.index] == "a":
            peer.kill()  # SIGKILL: the whole zone is gone at once
    for reader in cluster.live():
        with reader.client() as c:
            for name, data in files.items():
                assert c.read(name) == data, f"{name} through peer{reader.index}"


def test_a_peer_restarted_in_another_zone_is_placed_there_by_every_peer(two_zones: Cluster) -> None:
    cluster = two_zones
    moved = cluster.peers[3]
    before = {p.node_id: ZONE_OF_PEER[p.index] for p in cluster.peers}
    expected = before | {moved.node_id: "c"}
    old_ring, ring = HashRing.build(before, zones=before), HashRing.build(expected, zones=expected)
    blocks = [os.urandom(MIB) for _ in range(3)]
    while all(old_ring.spread_owners(sha256(b).hexdigest(), 2) == ring.spread_owners(sha256(b).hexdigest(), 2)
              for b in blocks):
        blocks.append(os.urandom(MIB))  # at least one chunk must move for the test to show anything
    with cluster.peers[0].client() as c:
        chunk_ids = [chunk.chunk_id for chunk in c.upload(b"".join(blocks), name="zones/moved.bin").version.chunks]
    digest_before = cluster.wait_converged()
    moved.terminate()
    moved.extra += ["--zone", "c"]  # the last --zone wins
    cluster.restart(moved)
    for peer in cluster.peers:
        wait_for(partial(sees_zones, peer, expected), 15, f"peer{peer.index} sees the new zone")
    assert cluster.wait_converged() != digest_before  # one ring, with the new zone, on every peer

    # Repair brings every chunk to the owners the new zones give it: one copy in each of two zones.
    owners = {chunk_id: ring.spread_owners(chunk_id, 2) for chunk_id in chunk_ids}
    assert all(len({expected[o] for o in pair}) == 2 for pair in owners.values())

    def placed() -> bool:
        return all(cluster.by_id(o).chunk_path(c).exists() for c, pair in owners.items() for o in pair)

    wait_for(placed, 20, "every chunk on its new owners")
    with cluster.peers[1].client() as c:
        assert c.read("zones/moved.bin") == b"".join(blocks)


@pytest.fixture
def zoned(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A cluster under rep:2, not yet started, whose peer i is in zone THREE_ZONES[i]: started with four
    peers it spans zones a and b, and its fifth and sixth peers add zone c. Repair rounds every 0.5 s."""
    cluster = Cluster(tmp_path / "zoned", replicas=2, extra=["--repair-interval", "0.5"],
                      per_peer=lambda index: ["--zone", THREE_ZONES[index]])
    try:
        yield cluster
    finally:
        cluster.close()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(cluster.tail_logs())


def upload_all(peer: PeerProc, files: dict[str, bytes]) -> list[ChunkPlacement]:
    """Uploads each file through `peer`; returns the chunks of all of them with their holders."""
    with peer.client() as c:
        for name, data in files.items():
            c.upload(data, name=name)
        return [chunk for name in files for chunk in c.info(name).chunks]


def test_three_zones_of_two_peers_lose_a_whole_zone_and_every_file_still_downloads(zoned: Cluster) -> None:
    cluster = zoned.start(6)
    zone_of = {p.node_id: THREE_ZONES[p.index] for p in cluster.peers}
    for peer in cluster.peers:
        wait_for(partial(sees_zones, peer, zone_of), 10, f"peer{peer.index} sees every zone")
    files = {f"three/{size}.bin": os.urandom(size) for size in (1, MIB, 3 * MIB + 5, 6 * MIB)}
    chunks = upload_all(cluster.peers[0], files)
    assert len(chunks) == 1 + 1 + 4 + 6
    for chunk in chunks:  # two copies in two zones: any one zone can go
        assert len({zone_of[node_id] for node_id in chunk.peers}) == 2, chunk

    # The zone holding the most copies goes, both its peers at once (SIGKILL): the most chunks are
    # left with a single copy, in another zone.
    held = Counter(zone_of[node_id] for chunk in chunks for node_id in chunk.peers)
    lost = max(sorted(held), key=held.__getitem__)
    for peer in cluster.peers:
        if THREE_ZONES[peer.index] == lost:
            peer.kill()
    assert sum(lost in {zone_of[n] for n in chunk.peers} for chunk in chunks) >= len(chunks) // 2
    survivors = cluster.live()
    assert len(survivors) == 4
    for reader in survivors:
        with reader.client() as c:
            for name, data in files.items():
                assert c.read(name) == data, f"{name} through peer{reader.index} with zone {lost} gone"


class Reader:
    """Downloads every file over and over on a thread of its own, each read through the next of its
    peers, and records every read that failed or returned other bytes: a file unreadable for a moment
    is a failure, not a retry."""

    def __init__(self, files: dict[str, bytes], peers: Sequence[PeerProc]) -> None:
        self.files = files
        self.peers = tuple(peers)
        self.reads = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zone-reader", daemon=True)

    def add(self, peers: Sequence[PeerProc]) -> None:
        self.peers = (*self.peers, *peers)  # a new tuple: the loop reads one or the other, whole

    def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            for name, data in self.files.items():
                peers = self.peers
                peer = peers[turn % len(peers)]
                turn += 1
                try:
                    with peer.client(timeout=10) as c:
                        if c.read(name) != data:
                            self.failures.append(f"{name} through peer{peer.index}: other bytes")
                except Exception as exc:  # noqa: BLE001 - every failed read is a finding
                    self.failures.append(f"{name} through peer{peer.index}: {type(exc).__name__}: {exc}")
                self.reads += 1

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the reader did not stop"


def test_a_new_zone_takes_its_share_while_every_file_stays_readable(zoned: Cluster) -> None:
    cluster = zoned.start(4)  # zones a and b
    files = {f"spread/{i}.bin": os.urandom(size) for i, size in enumerate((1, MIB, 2 * MIB + 3, 3 * MIB, 5 * MIB + 1))}
    chunk_ids = sorted({chunk.chunk_id for chunk in upload_all(cluster.peers[0], files)})
    old = list(cluster.peers)

    with Reader(files, old) as reader:
        wait_for(lambda: reader.reads >= len(files), 20, "the reader read every file once")
        newcomers = [cluster.add_peer(), cluster.add_peer()]  # peers 4 and 5: zone c
        reads_at_join = reader.reads
        cluster.wait_converged()
        reader.add(newcomers)  # once they agree on the ring, the newcomers serve reads as well
        with old[0].client(timeout=5) as c:
            ring = ring_of(c.status())
        assert {ring.zone_of(p.node_id) for p in newcomers} == {"c"}
        owners = {chunk_id: ring.spread_owners(chunk_id, 2) for chunk_id in chunk_ids}
        into_c = {(chunk_id, o) for chunk_id, pair in owners.items() for o in pair if ring.zone_of(o) == "c"}
        assert into_c, "no chunk is owned in zone c: the test would show nothing"

        def spreading() -> bool:
            return any(intact(cluster.by_id(o).chunk_path(chunk_id), chunk_id) for chunk_id, o in into_c)

        wait_for(spreading, 20, "a chunk copied to its owner in zone c")
        # Every chunk on its two owners under the new ring, in two zones, and the old copies dropped.
        wait_fully_replicated(cluster, 2, 30)
        reads_during_move = reader.reads - reads_at_join
        wait_for(lambda: reader.reads >= reads_at_join + reads_during_move + 2 * len(files), 20,
                 "two more rounds of reads after the move, newcomers included")

    assert reader.failures == []
    assert reads_during_move >= len(files), reads_during_move
