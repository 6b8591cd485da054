"""Put, the one-message upload of a small file: the same rules as an Upload stream, on a real peer;
and the SDK's choice between Put and Upload, against a recording fake server."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from client import DfsClient
from proto import dfs_pb2 as pb
from proto import dfs_pb2_grpc as pb_grpc
from tests.cluster import Cluster, PeerProc

MAX_FILE = 256 * 1024


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerProc]:
    cluster = Cluster(tmp_path_factory.mktemp("put"), replicas=1, extra=["--max-file-size", str(MAX_FILE)])
    try:
        cluster.start(1)
        yield cluster.peers[0]
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def stub(peer: PeerProc) -> Iterator[pb_grpc.FileStoreStub]:
    with grpc.insecure_channel(peer.grpc_addr) as channel:
        yield pb_grpc.FileStoreStub(channel)


def put_request(name: str, data: bytes, size: int | None = None, sha256: str | None = None,
                declared: int | None = None) -> pb.PutRequest:
    header = pb.UploadHeader(name=name, size=declared) if declared is not None else pb.UploadHeader(name=name)
    trailer = pb.UploadTrailer(size=len(data) if size is None else size,
                               sha256=hashlib.sha256(data).hexdigest() if sha256 is None else sha256)
    return pb.PutRequest(header=header, data=data, trailer=trailer)


def stored(peer: PeerProc, prefix: str) -> list[str]:
    with peer.client() as c:
        return [v.name for v in c.list(prefix)]


@pytest.mark.parametrize("size", [0, 1, 4096, MAX_FILE])
def test_put_stores_a_version_like_upload(stub: pb_grpc.FileStoreStub, peer: PeerProc, size: int) -> None:
    data = hashlib.sha256(str(size).encode()).digest() * (size // 32) + b"x" * (size % 32)
    reply = stub.Put(put_request(f"put/ok-{size}", data), timeout=10)
    assert reply.version.size == size
    assert reply.version.sha256 == hashlib.sha256(data).hexdigest()
    assert reply.version.version == 1
    with peer.client() as c:
        assert c.read(f"put/ok-{size}") == data


@pytest.mark.parametrize(("request_", "words"), [
    (pb.PutRequest(header=pb.UploadHeader(name="put/bad/no-trailer"), data=b"abc"), "needs a trailer"),
    (put_request("put/bad/sha", b"abc", sha256=hashlib.sha256(b"abd").hexdigest()), "does not match"),
    (put_request("put/bad/size", b"abc", size=4), "truncated"),
    (put_request("put/bad/declared", b"abc", declared=5), "more than|declared"),
    (put_request("put/bad/too-big", b"\0" * (MAX_FILE + 1)), "DFS_MAX_FILE_SIZE"),
    (put_request("put/bad/\x00name", b"abc"), "control"),
], ids=["no-trailer", "wrong-sha256", "wrong-size", "declared-size", "too-big", "bad-name"])
def test_a_put_that_breaks_a_rule_is_refused_and_stores_nothing(
        stub: pb_grpc.FileStoreStub, peer: PeerProc, request_: pb.PutRequest, words: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Put(request_, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert any(w in (err.value.details() or "") for w in words.split("|")), err.value.details()
    assert stored(peer, "put/bad/") == []
    with peer.client() as c:  # the peer goes on serving
        assert c.upload(b"fine", name="put/after-refusal").version.size == 4


class RecordingStore(pb_grpc.FileStoreServicer):
    """Answers Upload (and Put, unless `with_put` is off) with a made-up version; records the calls."""

    def __init__(self, with_put: bool) -> None:
        self.with_put = with_put
        self.calls: list[tuple[str, int]] = []

    def _reply(self, name: str, data: bytes) -> pb.UploadReply:
        return pb.UploadReply(version=pb.VersionInfo(name=name, version=1, size=len(data),
                                                     sha256=hashlib.sha256(data).hexdigest()))

    def Upload(self, request_iterator: Iterator[pb.UploadRequest], context: Any) -> pb.UploadReply:  # noqa: N802
        requests = list(request_iterator)
        data = b"".join(r.data for r in requests if r.WhichOneof("msg") == "data")
        self.calls.append(("Upload", len(data)))
        return self._reply(requests[0].header.name, data)

    def Put(self, request: pb.PutRequest, context: grpc.ServicerContext) -> pb.UploadReply:  # noqa: N802
        if not self.with_put:
            return super().Put(request, context)  # UNIMPLEMENTED, as a peer that predates Put
        self.calls.append(("Put", len(request.data)))
        return self._reply(request.header.name, request.data)


@pytest.fixture(params=[True, False], ids=["peer-with-put", "peer-without-put"])
def recording(request: pytest.FixtureRequest) -> Iterator[tuple[RecordingStore, str]]:
    servicer = RecordingStore(with_put=request.param)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_FileStoreServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait()


def test_the_sdk_puts_a_one_piece_file_and_streams_a_longer_one(recording: tuple[RecordingStore, str]) -> None:
    servicer, addr = recording
    with DfsClient(addr, timeout=10) as c:
        c.upload(b"s" * 1000, name="small", piece_size=1024)
        c.upload(b"b" * 3000, name="big", piece_size=1024)
        c.upload(b"", name="empty", piece_size=1024)
    one_piece = "Put" if servicer.with_put else "Upload"  # a peer without Put gets the stream instead
    assert servicer.calls == [(one_piece, 1000), ("Upload", 3000), (one_piece, 0)]
