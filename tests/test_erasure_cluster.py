"""Erasure coding against real peer processes: `ec:4+2` on 6 peers survives two dead peers and a
corrupt fragment, and the peers regenerate what was lost on their own."""

from __future__ import annotations

import os
from collections.abc import Callable

from peer.metadata.open import open_store
from peer.metadata.store import ChunkRef, FileRefSpec, VersionSpec
from peer.ring.hashring import HashRing
from tests.cluster import Cluster, PeerProc, wait_for
from tests.replication import intact

MIB = 1024 * 1024
REPAIR = ("--repair-interval", "0.3", "--scrub-interval", "0.5", "--scrub-rate", "0", "--dead-grace", "60")


def chunks_of(cluster: Cluster, name: str) -> tuple[ChunkRef, ...]:
    store = open_store(cluster.metadata)
    try:
        return store.get_version(FileRefSpec(name=name), VersionSpec()).chunks
    finally:
        store.close()


def placed_fragments(cluster: Cluster, name: str) -> list[tuple[str, str]]:
    """(holder, fragment id) of every fragment of the latest version of `name`."""
    return [(node, fragment) for ref in chunks_of(cluster, name)
            for node, fragment in zip(ref.peers, ref.fragments, strict=True)]


def read(peer: PeerProc, name: str) -> bytes:
    with peer.client() as c:
        return c.read(name)


def test_ec_4_2_survives_two_dead_peers_and_a_corrupt_fragment_which_is_rebuilt(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(6, extra=REPAIR)
    data = os.urandom(3 * MIB + 4321)
    with cluster.peers[0].client() as c:
        c.upload(data, "coded.bin", policy="ec:4+2")
        assert c.stat("coded.bin").policy == "ec:4+2"

    chunks = chunks_of(cluster, "coded.bin")
    assert len(chunks) == 4
    for ref in chunks:  # six fragments on six peers, each intact under its own hash; the chunk nowhere
        assert len(ref.fragments) == 6 and len(set(ref.peers)) == 6
        for node, fragment in zip(ref.peers, ref.fragments, strict=True):
            assert intact(cluster.by_id(node).chunk_path(fragment), fragment)
            assert not cluster.by_id(node).chunk_path(ref.chunk_id).exists()
    stored = sum(p.stat().st_size for peer in cluster.peers for p in (peer.data_dir / "chunks").rglob("*")
                 if p.is_file())
    assert stored < 1.6 * len(data)  # 1.5x plus the fragments' headers, not 2x

    # A corrupt data fragment: reads stay correct, scrub quarantines it and its owner regenerates it.
    ref = chunks[1]
    holder = cluster.by_id(ref.peers[0])
    path = holder.chunk_path(ref.fragments[0])
    good = path.read_bytes()
    path.write_bytes(bytes(b ^ 0xFF for b in good[:512]) + good[512:])
    reader = next(p for p in cluster.peers if p is not holder)
    assert read(reader, "coded.bin") == data
    wait_for(lambda: bool(intact(path, ref.fragments[0])) and any((holder.data_dir / "quarantine").iterdir()),
             30, "corrupt fragment quarantined and rebuilt by its owner")
    assert path.read_bytes() == good

    # Two peers gone (M = 2): every chunk still reads, from any survivor.
    victims = [cluster.by_id(chunks[0].peers[0]), cluster.by_id(chunks[0].peers[4])]
    for victim in victims:
        victim.kill()
    for survivor in cluster.live()[:2]:
        assert read(survivor, "coded.bin") == data


def test_a_lost_fragment_returns_when_a_disk_is_wiped(make_cluster: Callable[..., Cluster]) -> None:
    """A peer whose fragments vanished (a replaced disk) gets each regenerated from K others."""
    cluster = make_cluster(3, extra=REPAIR)
    data = os.urandom(2 * MIB + 17)
    with cluster.peers[0].client() as c:
        c.upload(data, "wiped.bin", policy="ec:2+1")
    chunks = chunks_of(cluster, "wiped.bin")
    victim = cluster.by_id(chunks[0].peers[2])
    lost = [(ref.fragments[i], victim.chunk_path(ref.fragments[i])) for ref in chunks
            for i, node in enumerate(ref.peers) if node == victim.node_id]
    assert lost
    for _, path in lost:
        path.unlink()
    wait_for(lambda: all(intact(path, fragment) for fragment, path in lost), 30,
             f"{len(lost)} wiped fragments regenerated on {victim.node_id[:8]}")
    assert read(cluster.peers[1], "wiped.bin") == data


def test_a_rep3_file_in_a_rep2_cluster_regains_three_copies_after_a_peer_dies(
    make_cluster: Callable[..., Cluster],
) -> None:
    """Repair places each chunk by the policy its version was stored with, not the cluster's."""
    cluster = make_cluster(5, extra=("--repair-interval", "0.3", "--dead-grace", "1"))
    data = os.urandom(2 * MIB + 99)
    with cluster.peers[0].client() as c:
        c.upload(data, "three.bin", policy="rep:3")
    chunks = chunks_of(cluster, "three.bin")
    victim = cluster.by_id(chunks[0].peers[0])
    victim.kill()
    alive = [p for p in cluster.peers if p is not victim]

    def three_copies_on_owners() -> bool:
        ring = HashRing.build([p.node_id for p in alive], 150)
        return all(intact(cluster.by_id(owner).chunk_path(ref.chunk_id), ref.chunk_id)
                   for ref in chunks for owner in ring.owners(ref.chunk_id, 3))

    wait_for(three_copies_on_owners, 30, "every chunk of the rep:3 file on its 3 owners of the new ring")
    assert read(alive[0], "three.bin") == data


def test_fragments_of_a_deleted_version_are_collected_and_shared_ones_kept(
    make_cluster: Callable[..., Cluster],
) -> None:
    """GC collects fragments like chunks: once no version references them, after the grace."""
    cluster = make_cluster(3, extra=("--gc-interval", "0.5", "--gc-grace", "2"))
    kept_data, gone_data = os.urandom(MIB + 5), os.urandom(2 * MIB + 7)
    with cluster.peers[0].client() as c:
        c.upload(kept_data, "kept.bin", policy="ec:2+1")
        c.upload(gone_data, "gone.bin", policy="ec:2+1")
    kept, gone = placed_fragments(cluster, "kept.bin"), placed_fragments(cluster, "gone.bin")
    with cluster.peers[1].client() as c:
        c.delete("gone.bin")
    wait_for(lambda: not any(cluster.by_id(node).chunk_path(f).exists() for node, f in gone), 30,
             f"the {len(gone)} fragments of the deleted file collected")
    assert all(intact(cluster.by_id(node).chunk_path(f), f) for node, f in kept)
    assert read(cluster.peers[2], "kept.bin") == kept_data
