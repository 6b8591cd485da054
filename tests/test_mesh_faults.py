"""Faults against real peer processes: killed peers, corrupt and missing copies, clients that go away,
and malformed upload streams. Victims are chosen through the placement the upload reported, so each
test hits the replica path it means to."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator

import grpc
import pytest

from client import DfsClient, IntegrityError, NotFoundError
from peer.rpc.auth import PEER_AUTH_KEY
from peer.security.peerauth import PeerSigner
from proto import dfs_pb2 as pb
from proto import dfs_pb2_grpc as pb_grpc
from tests.cluster import TEST_SECRET, Cluster, PeerProc, wait_for

MIB = 1024 * 1024


def upload(peer: PeerProc, name: str, size: int) -> tuple[bytes, list[tuple[str, list[str]]]]:
    data = os.urandom(size)
    with peer.client() as c:
        up = c.upload(data, name=name)
    return data, [(ch.chunk_id, ch.peers) for ch in up.version.chunks]


def member_state(peer: PeerProc, node_id: str) -> str:
    with peer.client(timeout=3) as c:
        return next(m.state for m in c.status().members if m.node_id == node_id)


def test_files_survive_the_loss_of_any_one_peer(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3)
    files = {f"survive/{i}.bin": upload(cluster.peers[i % 3], f"survive/{i}.bin", 3 * MIB + i)[0] for i in range(4)}
    victim = cluster.peers[1]
    victim.kill()
    for peer in cluster.live():
        with peer.client() as c:
            for name, data in files.items():
                assert c.read(name) == data


def test_upload_succeeds_when_an_owner_was_just_killed(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3)
    victim = cluster.peers[2]
    victim.kill()  # not yet suspected: writes to it fail and the next peer clockwise takes the copy
    data, placement = upload(cluster.peers[0], "handoff/now.bin", 6 * MIB)
    for _chunk_id, holders in placement:
        assert len(set(holders)) == 2 and victim.node_id not in holders
    with cluster.peers[1].client() as c:
        assert c.read("handoff/now.bin") == data


def test_upload_while_a_peer_is_dead_uses_the_alive_ones(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3)
    victim = cluster.peers[0]
    victim.kill()
    wait_for(lambda: member_state(cluster.peers[1], victim.node_id) == "dead", 10, "victim marked dead")
    data, placement = upload(cluster.peers[1], "dead/while.bin", 3 * MIB)
    alive = {cluster.peers[1].node_id, cluster.peers[2].node_id}
    assert all(set(holders) == alive for _c, holders in placement)
    with cluster.peers[2].client() as c:
        assert c.read("dead/while.bin") == data


def test_a_corrupt_copy_is_skipped_quarantined_and_logged(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3)
    data, placement = upload(cluster.peers[0], "rot/one-copy.bin", 2 * MIB)
    chunk_id, holders = placement[0]
    holder = cluster.by_id(holders[0])
    path = holder.chunk_path(chunk_id)
    path.write_bytes(b"\x00" * 16 + path.read_bytes()[16:])  # same size, wrong bytes
    for peer in cluster.peers:
        with peer.client() as c:
            assert c.read("rot/one-copy.bin") == data
    assert not path.exists()
    assert list((holder.data_dir / "quarantine").glob(f"{chunk_id}.*"))
    assert "quarantined" in holder.log_path.read_text()


def test_a_missing_copy_is_served_from_the_replica(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3)
    data, placement = upload(cluster.peers[1], "rot/missing.bin", 2 * MIB)
    chunk_id, holders = placement[1]
    cluster.by_id(holders[0]).chunk_path(chunk_id).unlink()
    with cluster.by_id(holders[0]).client() as c:
        assert c.read("rot/missing.bin") == data


def test_no_intact_copy_means_data_loss_never_wrong_bytes(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3)
    _data, placement = upload(cluster.peers[0], "rot/all-copies.bin", 2 * MIB + 5)
    chunk_id, holders = placement[1]
    for node_id in holders:
        path = cluster.by_id(node_id).chunk_path(chunk_id)
        path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()[:64]) + path.read_bytes()[64:])
    with cluster.peers[2].client() as c:
        stream = c.iter_download("rot/all-copies.bin")
        received = b""
        with pytest.raises(IntegrityError, match="no intact copy"):
            for piece in stream:
                received += piece
    assert len(received) <= MIB  # only the intact first chunk arrived, nothing of the corrupt one


def test_a_client_that_disconnects_mid_upload_leaves_no_version(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3)
    peer = cluster.peers[0]
    sent_enough = threading.Event()
    release = threading.Event()

    def requests() -> Iterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=pb.UploadHeader(name="gone/half.bin"))
        for i in range(3):
            yield pb.UploadRequest(data=os.urandom(MIB))
            if i == 2:
                sent_enough.set()
        release.wait(30)  # the client never finishes its stream

    with grpc.insecure_channel(peer.grpc_addr) as channel:
        future = pb_grpc.FileStoreStub(channel).Upload.future(requests())
        assert sent_enough.wait(10)
        future.cancel()
        release.set()
        with pytest.raises(grpc.FutureCancelledError):
            future.result()
    with peer.client() as c:
        with pytest.raises(NotFoundError):
            c.stat("gone/half.bin")
        # had the half upload been committed, this would be version 2
        assert c.upload(b"complete", name="gone/half.bin").version.version == 1


HEADER = pb.UploadRequest(header=pb.UploadHeader(name="bad/junk"))


@pytest.mark.parametrize("messages", [
    [pb.UploadRequest(data=b"data before header")],
    [pb.UploadRequest(header=pb.UploadHeader(name="bad/two-headers")),
     pb.UploadRequest(header=pb.UploadHeader(name="bad/two-headers"))],
    [pb.UploadRequest(header=pb.UploadHeader(name=""))],
    [pb.UploadRequest(header=pb.UploadHeader(name="bad/\x00nul"))],
    [],
    [pb.UploadRequest(header=pb.UploadHeader(name="bad/no-trailer")), pb.UploadRequest(data=b"cut short")],
    [pb.UploadRequest(header=pb.UploadHeader(name="bad/short", size=10)), pb.UploadRequest(data=b"123")],
    [pb.UploadRequest(header=pb.UploadHeader(name="bad/long", size=2)), pb.UploadRequest(data=b"123")],
    [pb.UploadRequest(header=pb.UploadHeader(name="bad/huge", size=2**62))],
    [pb.UploadRequest(header=pb.UploadHeader(name="bad/negative", size=-1))],
    [pb.UploadRequest(header=pb.UploadHeader(name="bad/lying-trailer")), pb.UploadRequest(data=b"abc"),
     pb.UploadRequest(trailer=pb.UploadTrailer(size=4))],
    [pb.UploadRequest(header=pb.UploadHeader(name="bad/wrong-sha")), pb.UploadRequest(data=b"abc"),
     pb.UploadRequest(trailer=pb.UploadTrailer(size=3, sha256="0" * 64))],
    [pb.UploadRequest(header=pb.UploadHeader(name="bad/after-trailer")),
     pb.UploadRequest(trailer=pb.UploadTrailer(size=0)), pb.UploadRequest(data=b"late")],
    [b"\x0a\x09\x0a"],  # a header cut short
    [HEADER, b"\x12\x05ab"],  # data shorter than its length says
    [HEADER, b"\x12\x02ab", b"\xff\xff"],  # junk after a good piece
    [HEADER, pb.UploadRequest()],  # a message with neither field
], ids=["data-first", "two-headers", "empty-name", "nul-in-name", "empty-stream", "no-trailer",
        "shorter-than-declared", "longer-than-declared", "huge-declared-size", "negative-size",
        "trailer-size-mismatch", "trailer-sha-mismatch", "data-after-trailer", "cut-header", "short-data",
        "junk-after-data", "empty-message"])
def test_malformed_upload_streams_are_rejected_and_store_nothing(
    make_cluster: Callable[..., Cluster], messages: list[pb.UploadRequest | bytes]
) -> None:
    cluster = make_cluster(1, replicas=1)
    peer = cluster.peers[0]
    raw = [m if isinstance(m, bytes) else m.SerializeToString() for m in messages]
    with grpc.insecure_channel(peer.grpc_addr) as channel:
        upload_raw = channel.stream_unary("/dfs.v1.FileStore/Upload", request_serializer=None,
                                          response_deserializer=pb.UploadReply.FromString)
        with pytest.raises(grpc.RpcError) as err:
            upload_raw(iter(raw), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with peer.client() as c:
        assert list(c.list()) == []
        assert c.upload(b"still serving", name="bad/after").version.version == 1


@pytest.mark.parametrize("raw", [b"\x0a\x40" + b"a" * 10, b"\x0a\x02\xff\xfe\x12\x01x", b"\x12\x01x"],
                         ids=["cut-id", "id-not-utf8", "no-id"])
def test_malformed_chunk_puts_are_rejected(make_cluster: Callable[..., Cluster], raw: bytes) -> None:
    cluster = make_cluster(1, replicas=1)
    with grpc.insecure_channel(cluster.peers[0].grpc_addr) as channel:
        put_raw = channel.unary_unary("/dfs.v1.PeerChunks/PutChunk", request_serializer=None,
                                      response_deserializer=pb.PutChunksReply.FromString)
        # Signed as a peer would sign it (over the chunk id, here empty: the request has none to parse),
        # so the refusal is about the bytes, not the credential.
        credential = PeerSigner(TEST_SECRET).sign("/dfs.v1.PeerChunks/PutChunk", b"")
        with pytest.raises(grpc.RpcError) as err:
            put_raw(raw, timeout=10, metadata=((PEER_AUTH_KEY, credential),))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_chunk_ids_are_the_sha256_of_their_bytes_on_disk(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(2)
    _data, placement = upload(cluster.peers[0], "disk/check.bin", 2 * MIB + 1)
    for chunk_id, holders in placement:
        for node_id in holders:
            assert hashlib.sha256(cluster.by_id(node_id).chunk_path(chunk_id).read_bytes()).hexdigest() == chunk_id


def test_download_of_unknown_file_is_not_found(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(1, replicas=1)
    with DfsClient(cluster.peers[0].grpc_addr, timeout=5) as c:
        with pytest.raises(NotFoundError):
            c.read("nope/never-uploaded")
