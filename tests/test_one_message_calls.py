"""Put and Get, the one-message upload and download of a small file: the same rules as the Upload
and Download streams, on a real peer; and the SDK's choice between them and the streams, against a
recording fake server (with and without the one-message methods, as a peer that predates them)."""

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


def download_stream(stub: pb_grpc.FileStoreStub, request: pb.DownloadRequest) -> tuple[pb.DownloadHeader, bytes]:
    replies = list(stub.Download(request, timeout=10))
    return replies[0].header, b"".join(r.data for r in replies[1:])


@pytest.mark.parametrize(("offset", "length"), [(0, 0), (0, 1), (100, 50), (4000, 0), (4096, 0)])
def test_get_answers_what_download_streams(stub: pb_grpc.FileStoreStub, offset: int, length: int) -> None:
    data = bytes(range(256)) * 16
    stub.Put(put_request("get/file", data), timeout=10)
    request = pb.DownloadRequest(file=pb.FileRef(name="get/file"), offset=offset, length=length)
    reply = stub.Get(pb.GetRequest(request=request, max_bytes=1 << 20), timeout=10)
    assert reply.HasField("data")
    assert (reply.header, reply.data) == download_stream(stub, request)
    assert reply.data == data[offset: offset + length if length else None]


def test_a_range_over_the_limit_gets_the_header_alone(stub: pb_grpc.FileStoreStub) -> None:
    data = b"z" * 5000
    stub.Put(put_request("get/larger", data), timeout=10)
    request = pb.DownloadRequest(file=pb.FileRef(name="get/larger"))
    for max_bytes in (4999, 0, -1):
        reply = stub.Get(pb.GetRequest(request=request, max_bytes=max_bytes), timeout=10)
        assert not reply.HasField("data")
        assert reply.header.length == 5000 and reply.header.version.size == 5000
    assert stub.Get(pb.GetRequest(request=request, max_bytes=5000), timeout=10).data == data


@pytest.mark.parametrize(("request_", "code"), [
    (pb.DownloadRequest(file=pb.FileRef(name="get/missing")), grpc.StatusCode.NOT_FOUND),
    (pb.DownloadRequest(file=pb.FileRef(name="get/file"), offset=10**9), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.DownloadRequest(file=pb.FileRef(name="get/file"), offset=-1), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.DownloadRequest(file=pb.FileRef(file_id="not-hex")), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.DownloadRequest(), grpc.StatusCode.INVALID_ARGUMENT),
], ids=["missing", "offset-past-end", "negative-offset", "bad-file-id", "no-file"])
def test_get_refuses_what_download_refuses(stub: pb_grpc.FileStoreStub, request_: pb.DownloadRequest,
                                           code: grpc.StatusCode) -> None:
    stub.Put(put_request("get/file", b"abc"), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        stub.Get(pb.GetRequest(request=request_, max_bytes=1 << 20), timeout=10)
    assert err.value.code() == code


class RecordingStore(pb_grpc.FileStoreServicer):
    """Answers Upload, Download (and Put and Get, unless `one_message` is off) from memory; records
    the calls."""

    def __init__(self, one_message: bool) -> None:
        self.one_message = one_message
        self.calls: list[tuple[str, int]] = []
        self.files: dict[str, list[tuple[pb.VersionInfo, bytes]]] = {}

    def _store(self, name: str, data: bytes) -> pb.UploadReply:
        versions = self.files.setdefault(name, [])
        info = pb.VersionInfo(name=name, version=len(versions) + 1, version_id=f"{len(versions) + 1:032x}",
                              size=len(data), sha256=hashlib.sha256(data).hexdigest())
        versions.append((info, data))
        return pb.UploadReply(version=info)

    def _find(self, request: pb.DownloadRequest) -> tuple[pb.VersionInfo, bytes]:
        versions = self.files[request.file.name]
        wanted = request.version.version_id
        return next(v for v in versions if v[0].version_id == wanted) if wanted else versions[-1]

    def Upload(self, request_iterator: Iterator[pb.UploadRequest], context: Any) -> pb.UploadReply:  # noqa: N802
        requests = list(request_iterator)
        data = b"".join(r.data for r in requests if r.WhichOneof("msg") == "data")
        self.calls.append(("Upload", len(data)))
        return self._store(requests[0].header.name, data)

    def Put(self, request: pb.PutRequest, context: grpc.ServicerContext) -> pb.UploadReply:  # noqa: N802
        if not self.one_message:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")  # a peer that predates Put
        self.calls.append(("Put", len(request.data)))
        return self._store(request.header.name, request.data)

    def Download(self, request: pb.DownloadRequest, context: Any) -> Iterator[pb.DownloadReply]:  # noqa: N802
        info, data = self._find(request)
        self.calls.append(("Download", info.version))
        yield pb.DownloadReply(header=pb.DownloadHeader(version=info, length=len(data)))
        yield pb.DownloadReply(data=data)

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> pb.GetReply:  # noqa: N802
        if not self.one_message:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        info, data = self._find(request.request)
        self.calls.append(("Get", info.version))
        header = pb.DownloadHeader(version=info, length=len(data))
        if len(data) <= request.max_bytes:
            return pb.GetReply(header=header, data=data)
        self._store(info.name, b"newer")  # a new version lands between this Get and the Download
        return pb.GetReply(header=header)


@pytest.fixture(params=[True, False], ids=["peer-with-put-and-get", "peer-without"])
def recording(request: pytest.FixtureRequest) -> Iterator[tuple[RecordingStore, str]]:
    servicer = RecordingStore(one_message=request.param)
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
    one_piece = "Put" if servicer.one_message else "Upload"  # a peer without Put gets the stream instead
    assert servicer.calls == [(one_piece, 1000), ("Upload", 3000), (one_piece, 0)]


def test_the_sdk_gets_a_small_file_and_streams_a_large_one(
        recording: tuple[RecordingStore, str], monkeypatch: pytest.MonkeyPatch) -> None:
    servicer, addr = recording
    monkeypatch.setattr("client.sdk.GET_MAX_BYTES", 2000)
    servicer._store("small", b"s" * 1000)
    servicer._store("large", b"L" * 3000)
    with DfsClient(addr, timeout=10) as c:
        assert c.read("small") == b"s" * 1000
        assert c.read("large") == b"L" * 3000
        assert c.read("small") == b"s" * 1000
    if servicer.one_message:
        # The large file's Download asks for the version its Get saw, not the newer one since.
        assert servicer.calls == [("Get", 1), ("Get", 1), ("Download", 1), ("Get", 1)]
    else:  # a peer without Get: after one UNIMPLEMENTED the client only streams
        assert servicer.calls == [("Download", 1), ("Download", 1), ("Download", 1)]
