"""Self-healing against real peer processes: re-replication after a peer dies or leaves, rebalancing
when one joins, hinted handoff, scrubbing, garbage collection, crash safety, and the repair counters
`dfs status` shows. Every test waits on conditions with deadlines; placement is checked on the peers'
disks against the ring (tests/replication.py), and victims are chosen through the ring."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import grpc
from click.testing import CliRunner

from client.cli import cli
from client.format import cluster_details
from client.models import ClusterStatus, MemberStatus, PeerStats
from peer.clock import ManualClock
from peer.errors import StorageFull
from peer.metrics import PeerMetrics
from peer.repair.antientropy import AntiEntropy
from peer.ring.hashring import HashRing
from peer.ring.placement import Placement
from peer.ring.policy import Policy
from peer.status import stats_dict
from peer.storage.chunkstore import ChunkStore
from peer.transfer.peers import DigestAnswer
from proto import dfs_pb2 as pb
from proto import dfs_pb2_grpc as pb_grpc
from tests.cluster import Cluster, PeerProc, wait_for
from tests.replication import intact, placement_report, ring_of, wait_fully_replicated

MIB = 1024 * 1024
R = 2
# Fast repair: anti-entropy every 0.3 s, back-to-back scrub passes at full speed, GC every 0.5 s. The GC
# grace stays long except in the GC tests, so no upload here can outlast it.
REPAIR = (
    "--repair-interval", "0.3",
    "--scrub-interval", "0.5",
    "--scrub-rate", "0",
    "--gc-interval", "0.5",
    "--gc-grace", "30",
)  # fmt: skip
# Keeps a dead peer on the ring for the whole test: its chunks go to hint holders meanwhile.
LONG_GRACE = (*REPAIR, "--dead-grace", "30")
GC_GRACE_S = 3.0
GC = (*REPAIR, "--gc-grace", str(GC_GRACE_S))


# ------------------------------------------------------------------ helpers


def upload_files(peer: PeerProc, prefix: str, count: int, size: int) -> dict[str, bytes]:
    files = {f"{prefix}/{i}.bin": os.urandom(size + i) for i in range(count)}
    with peer.client() as c:
        for name, data in files.items():
            c.upload(data, name=name)
    return files


def assert_downloads(cluster: Cluster, files: dict[str, bytes]) -> None:
    for peer in cluster.live():
        with peer.client() as c:
            for name, data in files.items():
                assert c.read(name) == data, f"{name} via peer{peer.index}"


def status_of(peer: PeerProc) -> ClusterStatus:
    with peer.client(timeout=3) as c:
        return c.status()


def member(peer: PeerProc, node_id: str) -> MemberStatus:
    return next(m for m in status_of(peer).members if m.node_id == node_id)


def stats_of(peer: PeerProc) -> dict[str, PeerStats | None]:
    """Every member's repair counters as `peer` reports them (None: the member did not answer)."""
    return {m.node_id: m.stats for m in status_of(peer).members}


def total(peer: PeerProc, counter: str) -> int:
    return sum(getattr(s, counter) for s in stats_of(peer).values() if s is not None)


def wait_dead(cluster: Cluster, victim: PeerProc) -> None:
    wait_for(
        lambda: all(member(p, victim.node_id).state == "dead" for p in cluster.live()), 10, "victim seen dead"
    )


def blocks_owned_by(ring: HashRing, node_id: str, count: int) -> bytes:
    """`count` random 1 MiB chunks that `node_id` owns on `ring`, so a test hits that peer's share."""
    blocks: list[bytes] = []
    while len(blocks) < count:
        block = os.urandom(MIB)
        if node_id in ring.owners(hashlib.sha256(block).hexdigest(), R):
            blocks.append(block)
    return b"".join(blocks)


def chunk_ids(data: bytes) -> list[str]:
    return [hashlib.sha256(data[i : i + MIB]).hexdigest() for i in range(0, len(data), MIB)]


def on_any_disk(cluster: Cluster, chunk_id: str) -> list[int]:
    return [p.index for p in cluster.live() if p.chunk_path(chunk_id).exists()]


def victim_through_ring(cluster: Cluster, spare: PeerProc) -> PeerProc:
    """An owner of the first chunk of the first file that is not `spare` (the peer the test talks to)."""
    report = placement_report(cluster, R)
    first = min(report.owners)
    return cluster.by_id(next(n for n in report.owners[first] if n != spare.node_id))


# ------------------------------------------------------- re-replication


def test_chunks_regain_r_copies_after_a_holder_is_killed(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(4, extra=REPAIR)
    entry = cluster.peers[0]
    files = upload_files(entry, "kill", 5, 3 * MIB + 17)
    wait_fully_replicated(cluster, R, 10)
    victim = victim_through_ring(cluster, entry)
    lost = placement_report(cluster, R).held_by(victim.node_id)
    assert lost

    victim.kill()
    # dead after --dead-timeout (2 s), off the ring after --dead-grace (4 s) more
    wait_for(lambda: not member(entry, victim.node_id).on_ring, 15, "killed peer leaves the ring")
    wait_fully_replicated(cluster, R, 20)

    report = placement_report(cluster, R)
    assert victim.node_id not in report.ring and len(report.ring) == 3
    for chunk_id in lost:
        holders = [p for p in cluster.live() if intact(p.chunk_path(chunk_id), chunk_id)]
        assert {p.node_id for p in holders} == set(report.owners[chunk_id])
    wait_for(lambda: total(entry, "repaired") >= len(lost), 5, "repairs counted")
    assert_downloads(cluster, files)


def test_chunks_regain_r_copies_after_a_holder_leaves(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(4, extra=REPAIR)
    entry = cluster.peers[0]
    files = upload_files(entry, "leave", 5, 3 * MIB + 17)
    wait_fully_replicated(cluster, R, 10)
    victim = victim_through_ring(cluster, entry)
    lost = placement_report(cluster, R).held_by(victim.node_id)

    assert victim.terminate() == 0
    # A leave takes the peer off the ring at once, well before dead timeout plus grace (6 s).
    wait_for(lambda: not member(entry, victim.node_id).on_ring, 3, "departed peer leaves the ring")
    wait_fully_replicated(cluster, R, 15)

    report = placement_report(cluster, R)
    assert victim.node_id not in report.ring
    assert all(chunk_id not in report.under_replicated for chunk_id in lost)
    assert_downloads(cluster, files)


# ------------------------------------------------------------ rebalancing


def download_loop(cluster: Cluster, files: dict[str, bytes], stop: threading.Event, errors: list[str]) -> int:
    """Downloads every file from every live peer in turn until `stop`; returns how many it checked."""
    done = 0
    while not stop.is_set():
        for peer in cluster.live():
            with peer.client(timeout=15) as c:
                for name, data in files.items():
                    try:
                        if c.read(name) != data:
                            errors.append(f"{name} via peer{peer.index}: wrong bytes")
                    except Exception as exc:  # noqa: BLE001 - collected and asserted by the test
                        errors.append(f"{name} via peer{peer.index}: {exc}")
                    done += 1
    return done


def test_a_joining_peer_takes_its_share_and_former_owners_drop_theirs(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(3, extra=REPAIR)
    files = upload_files(cluster.peers[0], "join", 6, 3 * MIB + 5)
    wait_fully_replicated(cluster, R, 10)

    stop = threading.Event()
    errors: list[str] = []
    checked: list[int] = []
    reader = threading.Thread(target=lambda: checked.append(download_loop(cluster, files, stop, errors)))
    reader.start()
    try:
        newcomer = cluster.add_peer()
        took = wait_fully_replicated(cluster, R, 20)
    finally:
        stop.set()
        reader.join(60)
    assert not errors, errors[:5]
    assert checked and checked[0] >= len(files)

    report = placement_report(cluster, R)
    assert newcomer.node_id in report.ring and len(report.ring) == 4
    share = report.held_by(newcomer.node_id)
    assert share and all(intact(newcomer.chunk_path(c), c) for c in share), f"rebalanced in {took:.1f} s"
    assert not report.misplaced  # former owners dropped the copies they no longer own
    assert_downloads(cluster, files)


# ---------------------------------------------------------- hinted handoff


def test_hinted_copies_are_handed_to_their_owner_when_it_returns(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3, extra=LONG_GRACE)
    entry, victim = cluster.peers[0], cluster.peers[2]
    ring = ring_of(status_of(entry))
    victim.kill()
    wait_dead(cluster, victim)
    data = blocks_owned_by(ring, victim.node_id, 3) + os.urandom(MIB // 2)
    with entry.client() as c:
        c.upload(data, name="hint/while-dead.bin")

    report = placement_report(cluster, R)
    assert victim.node_id in report.ring  # dead but within --dead-grace
    hinted = [c for c in chunk_ids(data) if victim.node_id in report.owners[c]]
    assert len(hinted) >= 3
    hint_holder: dict[str, PeerProc] = {}
    for chunk_id in hinted:
        (holder,) = [p for p in cluster.live() if p.node_id not in report.owners[chunk_id]]
        assert (chunk_id, holder.node_id) in report.misplaced  # the next peer clockwise took the copy
        assert chunk_id in report.under_replicated
        hint_holder[chunk_id] = holder

    cluster.restart(victim)
    wait_fully_replicated(cluster, R, 15)
    for chunk_id, holder in hint_holder.items():
        assert intact(victim.chunk_path(chunk_id), chunk_id)
        assert not holder.chunk_path(chunk_id).exists()
    wait_for(lambda: total(entry, "handed_off") >= len(hinted), 5, "hand-offs counted")
    assert_downloads(cluster, {"hint/while-dead.bin": data})


# -------------------------------------------------------------- scrubbing


def antientropy_runs(peer: PeerProc) -> dict[str, int]:
    """Each member's count of anti-entropy rounds, as `peer` sees the cluster."""
    return {m.node_id: w.runs for m in status_of(peer).members for w in m.workers if w.name == "anti-entropy"}


def test_the_scrubber_quarantines_a_rotten_copy_and_restores_it(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3, extra=REPAIR)
    files = upload_files(cluster.peers[0], "scrub", 1, 3 * MIB)
    # Two anti-entropy rounds of every peer after the upload: their indexes hold the new chunks, so
    # no pull of a chunk still in flight replaces the copy about to rot before the scrubber sees it.
    after_upload = antientropy_runs(cluster.peers[0])
    assert len(after_upload) == 3, after_upload
    wait_for(lambda: all(antientropy_runs(cluster.peers[0]).get(node, 0) >= runs + 2
                         for node, runs in after_upload.items()), 15, "two anti-entropy rounds after the upload")
    report = placement_report(cluster, R)
    chunk_id = sorted(report.owners)[0]
    holder = cluster.by_id(report.owners[chunk_id][0])
    path = holder.chunk_path(chunk_id)
    good = path.read_bytes()
    rotten = path.with_name("rotten")
    rotten.write_bytes(bytes(b ^ 0xFF for b in good[:4096]) + good[4096:])  # same size, flipped bytes
    os.replace(rotten, path)

    quarantine = holder.data_dir / "quarantine"
    observer = next(p for p in cluster.peers if p is not holder)

    def healed() -> bool:
        log = holder.log_path.read_text()
        stats = stats_of(observer)[holder.node_id]
        return (
            bool(list(quarantine.glob(f"{chunk_id}.*")))
            and bool(intact(path, chunk_id))
            and "quarantined" in log
            and f"scrub: restored chunk {chunk_id[:12]}" in log  # the scrubber's own restore, not anti-entropy's
            and stats is not None
            and stats.corrupt_found >= 1
        )

    wait_for(healed, 15, "rotten copy quarantined, restored in place and counted")
    (kept,) = quarantine.glob(f"{chunk_id}.*")
    assert kept.read_bytes() != good and len(kept.read_bytes()) == len(good)
    assert_downloads(cluster, files)


# ----------------------------------------------------- garbage collection


def test_gc_deletes_unreferenced_chunks_after_the_grace_and_keeps_shared_ones(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(3, extra=GC)
    entry = cluster.peers[0]
    shared = os.urandom(MIB)
    a, b = shared + os.urandom(2 * MIB + 3), shared + os.urandom(MIB + 7)
    with entry.client() as c:
        c.upload(a, name="gc/a.bin")
        c.upload(b, name="gc/b.bin")
    shared_id = chunk_ids(a)[0]
    unique_a = chunk_ids(a)[1:]
    written = {
        (chunk_id, p.index): p.chunk_path(chunk_id).stat().st_mtime
        for chunk_id in unique_a for p in cluster.live() if p.chunk_path(chunk_id).exists()
    }  # fmt: skip
    assert len(written) == R * len(unique_a)
    before = total(entry, "gc_deleted")

    with entry.client() as c:
        c.delete("gc/a.bin")
    gone_at: dict[tuple[str, int], float] = {}

    def all_gone() -> bool:
        for key in written:
            if key not in gone_at and not cluster.peers[key[1]].chunk_path(key[0]).exists():
                gone_at[key] = time.time()
        return len(gone_at) == len(written)

    wait_for(all_gone, 15, "unique chunks of the deleted file collected", lambda: f"gone {len(gone_at)}")
    for key, mtime in written.items():
        assert gone_at[key] >= mtime + GC_GRACE_S, f"{key} collected before the grace"
    assert len(on_any_disk(cluster, shared_id)) == R
    with entry.client() as c:
        assert c.read("gc/b.bin") == b
    wait_for(lambda: total(entry, "gc_deleted") >= before + len(written), 5, "gc_deleted counts every copy")


def held_upload(peer: PeerProc, name: str, pieces: list[bytes], release: threading.Event) -> grpc.Future:
    """A raw upload stream that sends `pieces`, then stays open until `release`."""

    def requests() -> Iterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=pb.UploadHeader(name=name))
        for piece in pieces:
            yield pb.UploadRequest(data=piece)
        release.wait(30)
        sent = b"".join(pieces)
        yield pb.UploadRequest(trailer=pb.UploadTrailer(size=len(sent), sha256=hashlib.sha256(sent).hexdigest()))

    channel = grpc.insecure_channel(peer.grpc_addr)
    future = pb_grpc.FileStoreStub(channel).Upload.future(requests(), timeout=60)
    future.add_done_callback(lambda _f: channel.close())
    return future


def test_gc_spares_the_chunks_of_an_upload_still_in_flight(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3, extra=GC)
    entry = cluster.peers[0]
    pieces = [os.urandom(MIB) for _ in range(3)]
    ids = [hashlib.sha256(p).hexdigest() for p in pieces]
    release = threading.Event()
    future = held_upload(entry, "gc/in-flight.bin", pieces, release)
    try:
        # Written but unreferenced until the version commits: GC passes (every 0.5 s) see them as garbage
        # and must leave them alone while their grace (3 s) runs.
        wait_for(lambda: all(len(on_any_disk(cluster, i)) == R for i in ids), 10, "in-flight chunks on disk")
        time.sleep(GC_GRACE_S / 2)
        assert all(len(on_any_disk(cluster, i)) == R for i in ids)
    finally:
        release.set()
    reply = future.result(30)
    assert [c.chunk_id for c in reply.version.chunks] == ids

    # Canary garbage written after the in-flight chunks, on every peer that holds one of them: once GC
    # has collected it, every later pass would have collected the in-flight chunks too, had the commit
    # not made them referenced.
    ring = ring_of(status_of(entry))
    holders = {p.node_id for i in ids for p in cluster.live() if p.chunk_path(i).exists()}
    canary = b"".join(blocks_owned_by(ring, node_id, 1) for node_id in sorted(holders))
    with entry.client() as c:
        c.upload(canary, name="gc/canary.bin")
        c.delete("gc/canary.bin")
    wait_for(lambda: not any(on_any_disk(cluster, i) for i in chunk_ids(canary)), 15, "canary collected")
    assert all(len(on_any_disk(cluster, i)) == R for i in ids)
    with entry.client() as c:
        assert c.read("gc/in-flight.bin") == b"".join(pieces)


# ----------------------------------------------------------- crash safety


def test_a_restart_removes_stale_temp_files(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3, extra=REPAIR)
    files = upload_files(cluster.peers[0], "tmp", 1, 2 * MIB)
    report = placement_report(cluster, R)
    chunk_id = sorted(report.owners)[0]
    holder = cluster.by_id(report.owners[chunk_id][0])
    holder.kill()  # a crash between writing a temp file and renaming it leaves files like these
    beside = holder.chunk_path(chunk_id).with_name(f"{chunk_id}.tmp-0123456789ab")
    beside.write_bytes(b"half a chunk")
    other = "ab" * 32
    alone = holder.chunk_path(other).with_name(f"{other}.tmp-ba9876543210")
    alone.parent.mkdir(parents=True, exist_ok=True)
    alone.write_bytes(b"torn")

    cluster.restart(holder)  # ready.json is written only after the chunk store recovered
    assert not beside.exists() and not alone.exists()
    assert intact(holder.chunk_path(chunk_id), chunk_id)
    assert "removed 2 stale temp chunk files" in holder.log_path.read_text()
    assert not list((holder.data_dir / "chunks").glob("*/*/*.tmp-*"))
    assert_downloads(cluster, files)


def test_every_acknowledged_upload_survives_a_peer_killed_mid_stream(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3, extra=REPAIR)
    entry, victim = cluster.peers[0], cluster.peers[2]
    acked: dict[str, bytes] = {}
    failed: list[str] = []
    stop = threading.Event()

    def uploader() -> None:
        i = 0
        with entry.client(timeout=30) as c:
            while not stop.is_set():
                name, data = f"crash/{i}.bin", os.urandom(2 * MIB + i)
                try:
                    c.upload(data, name=name)
                    acked[name] = data
                except Exception as exc:  # noqa: BLE001 - an unacknowledged upload may fail
                    failed.append(f"{name}: {exc}")
                i += 1

    thread = threading.Thread(target=uploader)
    thread.start()
    try:
        wait_for(lambda: len(acked) >= 3, 20, "uploads before the kill")
        victim.kill()
        at_kill = len(acked)
        wait_for(lambda: len(acked) >= at_kill + 5, 30, "uploads after the kill", lambda: str(failed[-3:]))
    finally:
        stop.set()
        thread.join(60)
    assert_downloads(cluster, acked)


# -------------------------------------------------------------- visibility


def repair_counters(peer: PeerProc) -> dict[str, tuple[int, int] | None]:
    """(under_replicated, misplaced) of every member as `peer` reports them."""
    return {n: None if s is None else (s.under_replicated, s.misplaced) for n, s in stats_of(peer).items()}


def test_status_shows_under_replication_and_hints_until_healed(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3, extra=LONG_GRACE)
    entry = cluster.peers[0]
    upload_files(entry, "vis/before", 2, 2 * MIB)
    victim = victim_through_ring(cluster, entry)  # holds chunks it shares with the others
    observer = next(p for p in cluster.peers if p not in (entry, victim))
    ring = ring_of(status_of(entry))
    victim.kill()
    wait_dead(cluster, victim)

    counters: list[object] = []

    def seen(pred: Callable[[tuple[int, int]], bool]) -> Callable[[], bool]:
        def check() -> bool:
            now = repair_counters(observer)
            counters[:] = [now]
            return any(c is not None and pred(c) for c in now.values())

        return check

    wait_for(seen(lambda c: c[0] > 0), 10, "under-replication reported", lambda: str(counters))
    with entry.client() as c:
        c.upload(blocks_owned_by(ring, victim.node_id, 2), name="vis/hinted.bin")
    wait_for(seen(lambda c: c[1] > 0), 10, "misplaced hints reported", lambda: str(counters))

    text = CliRunner().invoke(cli, ["--peer", observer.grpc_addr, "--timeout", "10", "status"])
    assert text.exit_code == 0, text.output
    assert "UNDER-REPL" in text.stdout and "MISPLACED" in text.stdout and "SCRUB PASSES" in text.stdout

    def json_shows_hints() -> bool:
        doc = CliRunner().invoke(cli, ["--peer", observer.grpc_addr, "--timeout", "10", "--json", "status"])
        members = {m["node_id"]: m for m in json.loads(doc.stdout)["members"]}
        assert members[victim.node_id]["stats"] is None  # a dead member reports nothing
        return any(m["stats"] and m["stats"]["misplaced"] > 0 for m in members.values())

    wait_for(json_shows_hints, 5, "dfs --json status shows the hints")

    cluster.restart(victim)

    def healed() -> bool:
        now = repair_counters(observer)
        counters[:] = [now]
        return len(now) == 3 and all(c == (0, 0) for c in now.values())

    wait_for(healed, 15, "counters back to zero", lambda: str(counters))
    assert placement_report(cluster, R).fully_replicated


def test_status_table_shows_each_members_repair_counters() -> None:
    stats = PeerStats(chunk_count=12, chunk_bytes=12 * MIB, under_replicated=3, misplaced=4, repaired=5,
                      handed_off=6, scrubbed_bytes=3 * MIB, scrub_passes=7, corrupt_found=8, gc_deleted=9,
                      last_sync_s=1.5)  # fmt: skip
    status = ClusterStatus(
        node_id="a" * 64, ring_digest="d", replicas=2,
        members=[MemberStatus("a" * 64, "alive", stats=stats), MemberStatus("b" * 64, "dead")],
    )  # fmt: skip
    lines = cluster_details(status).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("NODE") and "UNDER-REPL" in line)
    assert lines[header + 1].split() == ["aaaaaaaaaaaa", "*", "12", "3", "4", "5", "6", "7", "3.0", "MiB", "8", "9",
                                         "1.5s", "ago"]  # fmt: skip
    assert lines[header + 2].split() == ["bbbbbbbbbbbb"] + ["-"] * 10
    assert status.to_dict()["members"][0]["stats"]["corrupt_found"] == 8
    assert status.to_dict()["members"][1]["stats"] is None


# ------------------------------------------------------------ known bugs


SCRUB_OFF = (*REPAIR, "--scrub-interval", "3600")  # the first pass runs on the empty store at start


def test_an_upload_reusing_a_chunk_replaces_a_corrupt_copy(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3, extra=SCRUB_OFF)
    entry = cluster.peers[0]
    data = os.urandom(2 * MIB)
    with entry.client() as c:
        first = c.upload(data, name="rot/first.bin").version.chunks[0]
    path = cluster.by_id(first.peers[0]).chunk_path(first.chunk_id)
    good = path.read_bytes()
    path.write_bytes(bytes(b ^ 0xFF for b in good[:4096]) + good[4096:])  # same size, flipped bytes
    with entry.client() as c:
        again = c.upload(data, name="rot/again.bin").version.chunks[0]
    assert again.chunk_id == first.chunk_id
    for node_id in again.peers:  # every peer the upload acknowledged holds an intact copy
        assert intact(cluster.by_id(node_id).chunk_path(again.chunk_id), again.chunk_id), node_id[:8]


def test_chunkstore_put_replaces_a_corrupt_copy_of_the_same_size(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    data = os.urandom(4096)
    chunk_id = hashlib.sha256(data).hexdigest()
    store.put(chunk_id, data)
    store.path(chunk_id).write_bytes(bytes(b ^ 0xFF for b in data))
    store.put(chunk_id, data)
    assert hashlib.sha256(store.path(chunk_id).read_bytes()).hexdigest() == chunk_id


class _OneOwnerView:
    local_id = "a"
    ring = HashRing.build(["a", "b"], 150)

    def is_usable(self, node_id: str) -> bool:
        return True


class _FullDiskPeer:
    """Peer b: alive and answering digests, holds nothing, and refuses every copy (its disk is full)."""

    async def compare_digests(
        self, node_id: str, from_node: str, ring_digest: str, digests: Sequence[bytes]
    ) -> DigestAnswer:
        return DigestAnswer(False, {b: [] for b, d in enumerate(digests) if d})

    async def has_many(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        return set()

    async def put(self, node_id: str, chunk_id: str, data: bytes) -> None:
        raise StorageFull(f"no space left for {chunk_id}")


class _AllReferenced:
    async def referenced_chunks(self, chunk_ids: Sequence[str]) -> set[str]:
        return set(chunk_ids)

    async def placements(self, stored: Sequence[str], default_policy: str) -> dict[str, tuple[object, ...]]:
        return {}  # every chunk is a whole copy under the cluster's policy


async def test_under_replicated_counts_chunks_a_live_owner_lacks(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    data = os.urandom(4096)
    store.put(hashlib.sha256(data).hexdigest(), data)
    metrics = PeerMetrics()
    worker = AntiEntropy(
        _OneOwnerView(), store, _FullDiskPeer(), _AllReferenced(), metrics, ManualClock(),  # type: ignore[arg-type]
        placement=Placement(_OneOwnerView.ring, lambda _node: True, Policy.replication(R)), batch=10,
    )  # fmt: skip
    await worker.work_once()
    assert stats_dict(metrics, 0.0)["under_replicated"] == 1
