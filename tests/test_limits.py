"""The limits on what one client may cost a peer: each is tried against a real peer process, which
must refuse it with a clear status, store nothing, and keep serving everyone else."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from client.errors import InvalidArgument
from proto import dfs_pb2 as pb
from proto import dfs_pb2_grpc as pb_grpc
from tests.cluster import Cluster, PeerProc, wait_for

pytestmark = pytest.mark.timeout(120)

MAX_FILE = 3 * 1024 * 1024
IDLE_S = 1.0
MAX_RPCS = 16
MAX_STREAMS = 3
# grpc shares one connection among a process's channels to the same address unless told otherwise;
# each of these stands for a separate client, so each gets its own connection.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerProc]:
    cluster = Cluster(tmp_path_factory.mktemp("limits"), replicas=1, extra=[
        "--max-file-size", str(MAX_FILE), "--max-metadata-bytes", "100",
        "--client-idle-timeout", str(IDLE_S), "--max-concurrent-rpcs", str(MAX_RPCS),
        "--max-streams-per-client", str(MAX_STREAMS),
    ])
    try:
        cluster.start(1)
        yield cluster.peers[0]
    finally:
        cluster.close()


def still_serves(peer: PeerProc, tmp_path: Path) -> None:
    sample = tmp_path / "ok"
    sample.write_bytes(b"fine" * 1000)
    with peer.client(timeout=10) as c:
        c.upload(sample, name="limits/ok")
        assert c.read("limits/ok") == sample.read_bytes()


def names(peer: PeerProc, prefix: str) -> list[str]:
    with peer.client(timeout=10) as c:
        return [v.name for v in c.list(prefix)]


def test_a_file_over_the_size_limit_is_refused_and_not_committed(peer: PeerProc, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"\0" * (MAX_FILE + 1))
    with peer.client(timeout=30) as c, pytest.raises(InvalidArgument, match="DFS_MAX_FILE_SIZE"):
        c.upload(big, name="limits/big")
    assert names(peer, "limits/big") == []
    exact = tmp_path / "exact"
    exact.write_bytes(b"\1" * MAX_FILE)
    with peer.client(timeout=30) as c:
        assert c.upload(exact, name="limits/exact").version.size == MAX_FILE
    still_serves(peer, tmp_path)


def test_user_metadata_over_the_limit_is_refused(peer: PeerProc, tmp_path: Path) -> None:
    sample = tmp_path / "m"
    sample.write_bytes(b"meta")
    with peer.client(timeout=10) as c, pytest.raises(InvalidArgument, match="DFS_MAX_METADATA_BYTES"):
        c.upload(sample, name="limits/meta", metadata={"k": "v" * 200})
    assert names(peer, "limits/meta") == []


def test_a_stalled_upload_is_cancelled_after_the_idle_timeout(peer: PeerProc, tmp_path: Path) -> None:
    release = threading.Event()

    def stalled() -> Iterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=pb.UploadHeader(name="limits/stalled"))
        yield pb.UploadRequest(data=b"partial")
        release.wait(30)

    with grpc.insecure_channel(peer.grpc_addr) as channel:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.FileStoreStub(channel).Upload(stalled(), timeout=30)
        release.set()
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "cancelled" in (err.value.details() or "")
    assert names(peer, "limits/stalled") == []
    still_serves(peer, tmp_path)


def test_a_download_nobody_reads_is_cancelled_after_the_idle_timeout(peer: PeerProc, tmp_path: Path) -> None:
    sample = tmp_path / "d"
    sample.write_bytes(b"\2" * (MAX_FILE - 1))
    with peer.client(timeout=30) as c:
        c.upload(sample, name="limits/slow-reader")
    # A small receive window, so the peer's writes block as soon as the client stops reading.
    options = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16 * 1024),
               ("grpc.max_receive_message_length", 8 * 1024 * 1024)]
    with grpc.insecure_channel(peer.grpc_addr, options=options) as channel:
        call = pb_grpc.FileStoreStub(channel).Download(
            pb.DownloadRequest(file=pb.FileRef(name="limits/slow-reader")), timeout=60)
        first = next(call)
        assert first.WhichOneof("msg") == "header"
        wait_for(lambda: "download was cancelled" in peer.log_path.read_text(), 30,
                 "the peer to give up on the stalled reader")
        received = 0
        with pytest.raises(grpc.RpcError) as err:
            for reply in call:
                received += len(reply.data)
        # The peer's own status (not this call's 60 s deadline), which arrives once the client reads.
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "download was cancelled" in (err.value.details() or "")
        assert received < sample.stat().st_size
    still_serves(peer, tmp_path)


def held_upload(name: str, release: threading.Event) -> Iterator[pb.UploadRequest]:
    """An upload kept open (inside the idle timeout) until `release` is set, then ended without a trailer."""
    yield pb.UploadRequest(header=pb.UploadHeader(name=name))
    while not release.wait(IDLE_S / 4):
        yield pb.UploadRequest(data=b"x")


def test_calls_beyond_the_concurrency_limit_are_refused_not_queued(peer: PeerProc, tmp_path: Path) -> None:
    release = threading.Event()

    def held(i: int) -> Iterator[pb.UploadRequest]:
        return held_upload(f"limits/held-{i}", release)

    channels = [grpc.insecure_channel(peer.grpc_addr, options=OWN_CONNECTION) for _ in range(MAX_RPCS)]
    futures = [pb_grpc.FileStoreStub(ch).Upload.future(held(i), timeout=60) for i, ch in enumerate(channels)]
    refused: list[grpc.RpcError] = []
    try:
        with grpc.insecure_channel(peer.grpc_addr, options=OWN_CONNECTION) as extra:
            stub = pb_grpc.FileStoreStub(extra)

            def one_more_is_refused() -> bool:
                # A probe that arrives while the held calls are still connecting can take a slot
                # from one of them, which is then refused: open it again, so all slots end up held.
                for i, f in enumerate(futures):
                    if f.done():
                        futures[i] = pb_grpc.FileStoreStub(channels[i]).Upload.future(held(i), timeout=60)
                try:
                    stub.List(pb.ListRequest(), timeout=5)
                except grpc.RpcError as exc:
                    refused.append(exc)
                    return True
                return False  # not all held calls have arrived yet

            wait_for(one_more_is_refused, 30, "a call beyond the limit to be refused")
        assert refused[-1].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        release.set()
        for f in futures:
            f.exception(timeout=30)
        for ch in channels:
            ch.close()
    assert names(peer, "limits/held-") == []  # the held uploads ended without a trailer
    still_serves(peer, tmp_path)


def test_one_connection_gets_at_most_its_stream_limit_while_others_are_served(peer: PeerProc, tmp_path: Path) -> None:
    """HTTP/2 streams per client connection are capped (DFS_MAX_STREAMS_PER_CLIENT): a client holding
    that many calls open gets no further call served on that connection, and nobody else notices."""
    release = threading.Event()
    with grpc.insecure_channel(peer.grpc_addr, options=OWN_CONNECTION) as greedy:
        stub = pb_grpc.FileStoreStub(greedy)
        futures = [stub.Upload.future(held_upload(f"limits/streams-{i}", release), timeout=60)
                   for i in range(MAX_STREAMS)]
        try:
            def one_more_waits() -> bool:
                try:
                    stub.List(pb.ListRequest(), timeout=1.0)
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc
                    return True
                return False  # the held calls have not all been opened yet

            wait_for(one_more_waits, 30, "a call beyond the stream limit to wait")
            with grpc.insecure_channel(peer.grpc_addr, options=OWN_CONNECTION) as other:
                assert pb_grpc.FileStoreStub(other).List(pb.ListRequest(), timeout=5) is not None
        finally:
            release.set()
            for f in futures:
                f.exception(timeout=30)
        assert stub.List(pb.ListRequest(), timeout=5) is not None, "the connection is served again"
    assert names(peer, "limits/streams-") == []
    still_serves(peer, tmp_path)
