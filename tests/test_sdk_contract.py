"""The SDK's documented contract: `Client`, its download destinations, `info`, and upload sources.

Most tests run the real SDK against real `dfs-peer serve` processes with 64 KiB chunks, so small
files span several chunks. A real peer verifies every chunk it reads, so it never sends a corrupt
one; the tests of what the client does with bad data therefore use a scripted FileStore on a real
gRPC server that sends whatever a test tells it to (corrupt chunks, gaps, no markers at all).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

import client
from client import Client, DfsClient, DownloadStream, IntegrityError, InvalidArgument, NotFoundError
from proto import dfs_pb2, dfs_pb2_grpc
from tests.cluster import Cluster

CHUNK = 64 * 1024


@pytest.fixture
def cluster(make_cluster: Callable[..., Cluster], monkeypatch: pytest.MonkeyPatch) -> Cluster:
    monkeypatch.setenv("DFS_CHUNK_SIZE", str(CHUNK))  # the peer processes inherit it
    return make_cluster(2)


def upload(c: Client, name: str, size: int) -> bytes:
    data = os.urandom(size)
    c.upload(data, name=name)
    return data


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A directory of the test's own for downloads (the cluster's data lives beside it)."""
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ------------------------------------------------------------------------------ the name


def test_client_is_the_documented_name_and_dfs_client_the_same_class() -> None:
    assert Client is DfsClient
    assert "Client" in client.__all__ and "DfsClient" in client.__all__
    assert Client.info is Client.stat


# ---------------------------------------------------------------- downloads from real peers


def test_every_download_destination_brings_the_uploaded_bytes(cluster: Cluster, out: Path) -> None:
    with cluster.peers[0].client() as c:
        data = upload(c, "dest/five-chunks.bin", 4 * CHUNK + 123)
        info = dataclasses.replace(c.info("dest/five-chunks.bin"), chunks=[])  # a download brings no chunk list
        buffer = io.BytesIO()
        seen: list[int] = []

        assert c.download("dest/five-chunks.bin", str(out / "as-str.bin")) == info
        assert c.download("dest/five-chunks.bin", out / "as-path.bin", progress=seen.append) == info
        assert c.download("dest/five-chunks.bin", buffer) == info
        with open(out / "as-file.bin", "wb") as fh:
            assert c.download("dest/five-chunks.bin", fh) == info
        with c.download("dest/five-chunks.bin") as stream:
            pieces = list(stream)

    assert (out / "as-str.bin").read_bytes() == data
    assert (out / "as-path.bin").read_bytes() == data and sum(seen) == len(data)
    assert buffer.getvalue() == data and (out / "as-file.bin").read_bytes() == data
    assert b"".join(pieces) == data and stream.info == info and len(pieces) == 5
    assert stream.chunk_checked  # the peer sent chunk markers: each piece was checked before it came out
    assert leftovers(out) == ["as-file.bin", "as-path.bin", "as-str.bin"]  # no temporary file left


def test_a_small_file_in_one_message_is_checked_chunk_by_chunk_too(cluster: Cluster) -> None:
    with cluster.peers[1].client() as c:
        data = upload(c, "dest/small.bin", 3 * CHUNK - 7)  # under the one-message Get limit
        stream = c.download("dest/small.bin")

        assert b"".join(stream) == data and stream.chunk_checked


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 1), (5, CHUNK), (CHUNK, CHUNK), (CHUNK - 1, 2), (CHUNK + 10, 2 * CHUNK + 5), (3 * CHUNK, 0), (0, 0)],
)
def test_ranges_arrive_exact_through_every_destination(
    cluster: Cluster, out: Path, offset: int, length: int
) -> None:
    with cluster.peers[0].client() as c:
        data = upload(c, "dest/ranges.bin", 4 * CHUNK + 99)
        want = data[offset : offset + length] if length else data[offset:]

        streamed = b"".join(c.download("dest/ranges.bin", offset=offset, length=length))
        c.download("dest/ranges.bin", out / "range.bin", offset=offset, length=length)

    assert streamed == want and (out / "range.bin").read_bytes() == want


def test_a_failed_download_to_a_path_leaves_the_old_file_and_no_temporary_file(
    cluster: Cluster, out: Path
) -> None:
    target = out / "keep.bin"
    target.write_bytes(b"the file that was here before")
    with cluster.peers[0].client() as c:
        _data = upload(c, "fail/rotten.bin", 3 * CHUNK)
        placement = c.info("fail/rotten.bin").chunks
        with pytest.raises(NotFoundError):
            c.download("fail/rotten.bin", target, version=7)
        for node_id in placement[1].peers:  # every copy of the second chunk: the peer fails mid-way
            path = cluster.by_id(node_id).chunk_path(placement[1].chunk_id)
            path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))
        with pytest.raises(IntegrityError, match="no intact copy"):
            c.download("fail/rotten.bin", target)

    assert target.read_bytes() == b"the file that was here before"
    assert leftovers(out) == ["keep.bin"]


def test_an_iterator_closed_early_ends_the_download_and_the_client_goes_on(cluster: Cluster) -> None:
    with cluster.peers[0].client(timeout=10) as c:
        data = upload(c, "early/close.bin", 8 * CHUNK)
        stream = c.download("early/close.bin")
        first = next(stream)
        stream.close()

        with pytest.raises(StopIteration):
            next(stream)
        assert first == data[:CHUNK]
        assert c.read("early/close.bin") == data


# ------------------------------------------------------------------------- info and upload


def test_info_is_stat(cluster: Cluster) -> None:
    with cluster.peers[0].client() as c:
        upload(c, "info/x.bin", 2 * CHUNK + 1)
        upload(c, "info/x.bin", 10)

        assert c.info("info/x.bin") == c.stat("info/x.bin")
        assert c.info("info/x.bin", 1) == c.stat("info/x.bin", version=1)
        assert c.info("info/x.bin", version=1).chunk_count == 3 == len(c.info("info/x.bin", 1).chunks)


def test_upload_takes_a_path_bytes_or_a_file_object_and_refuses_an_empty_name(
    cluster: Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "from-path.bin"
    path.write_bytes(os.urandom(2 * CHUNK + 5))
    raw = os.urandom(CHUNK + 1)
    with cluster.peers[0].client() as c:
        by_str = c.upload(str(path))
        by_path = c.upload(path, name="up/path.bin")
        by_bytes = c.upload(raw, name="up/bytes.bin")
        with path.open("rb") as fh:
            by_file = c.upload(fh, name="up/file.bin")
        for source in (raw, io.BytesIO(raw)):
            with pytest.raises(InvalidArgument, match="a name is required"):
                c.upload(source)
        for source in (path, raw, io.BytesIO(raw)):
            with pytest.raises(InvalidArgument, match="the name must not be empty"):
                c.upload(source, name="")

        assert by_str.version.name == "from-path.bin" and by_path.version.name == "up/path.bin"
        assert c.read("from-path.bin") == c.read("up/path.bin") == c.read("up/file.bin") == path.read_bytes()
        assert c.read("up/bytes.bin") == raw and by_bytes.version.sha256 == hashlib.sha256(raw).hexdigest()
        assert by_file.version.size == path.stat().st_size
        assert sorted(f.name for f in c.list()) == ["from-path.bin", "up/bytes.bin", "up/file.bin", "up/path.bin"]


# ---------------------------------------------- what the client does with bad data (scripted peer)


def chunk_of(seed: int, size: int = 1000) -> bytes:
    return bytes((seed + i) % 251 for i in range(size))


class ScriptedPeer(dfs_pb2_grpc.FileStoreServicer):
    """Answers every Download with `header` and then `script`, whatever it says. Get answers as a
    peer that predates it unless `one_message` is set, so downloads take the streaming path.
    `ended` is set once a Download call is over on this side, however it ended."""

    def __init__(self) -> None:
        self.header = dfs_pb2.DownloadHeader()
        self.script: list[dfs_pb2.DownloadReply] = []
        self.endless = False
        self.ended = threading.Event()
        self.one_message = False

    def Get(self, request: dfs_pb2.GetRequest, context: Any) -> dfs_pb2.GetReply:  # noqa: N802
        """With `one_message`, the scripted download as one Get reply: the header, the markers, the data."""
        if not self.one_message:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "this peer predates Get")
        data = b"".join(reply.data for reply in self.script if reply.WhichOneof("msg") == "data")
        markers = [reply.marker for reply in self.script if reply.WhichOneof("msg") == "marker"]
        return dfs_pb2.GetReply(header=self.header, data=data, markers=markers)

    def Download(self, request: dfs_pb2.DownloadRequest, context: Any) -> Iterator[dfs_pb2.DownloadReply]:  # noqa: N802
        context.add_callback(self.ended.set)
        yield dfs_pb2.DownloadReply(header=self.header)
        yield from self.script
        while self.endless and context.is_active():
            yield dfs_pb2.DownloadReply(data=b"x" * 1000)


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedPeer, Client]]:
    peer = ScriptedPeer()
    executor = futures.ThreadPoolExecutor(max_workers=4)
    server = grpc.server(executor, options=[("grpc.so_reuseport", 0)])
    dfs_pb2_grpc.add_FileStoreServicer_to_server(peer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with Client(f"127.0.0.1:{port}", timeout=10) as c:
        yield peer, c
    server.stop(None).wait()
    executor.shutdown(wait=True)


def serve(peer: ScriptedPeer, chunks: list[bytes], *, markers: bool = True, offset: int = 0,
          length: int | None = None) -> None:
    """Scripts a download of the file made of `chunks`: the header, then each chunk after its marker."""
    whole = b"".join(chunks)
    version = dfs_pb2.VersionInfo(
        name="f", version=1, size=len(whole), sha256=hashlib.sha256(whole).hexdigest(), chunk_count=len(chunks)
    )
    peer.header = dfs_pb2.DownloadHeader(
        version=version, offset=offset, length=len(whole) - offset if length is None else length,
        chunk_markers=markers,
    )
    start = 0
    for chunk in chunks:
        if markers:
            marker = dfs_pb2.ChunkMarker(chunk_id=hashlib.sha256(chunk).hexdigest(), size=len(chunk), offset=start)
            peer.script.append(dfs_pb2.DownloadReply(marker=marker))
        peer.script.append(dfs_pb2.DownloadReply(data=chunk))
        start += len(chunk)


def drain(stream: DownloadStream, into: list[bytes]) -> None:
    for piece in stream:
        into.append(piece)


def test_a_corrupt_chunk_raises_before_any_of_its_bytes_are_yielded(scripted: tuple[ScriptedPeer, Client]) -> None:
    peer, c = scripted
    good, bad = chunk_of(1), chunk_of(2)
    serve(peer, [good, bad, chunk_of(3)])
    peer.script[3] = dfs_pb2.DownloadReply(data=bad[:500] + b"!" + bad[501:])  # the second chunk's data
    received: list[bytes] = []

    with pytest.raises(IntegrityError, match="chunk .* has sha256"), c.download("f") as stream:
        drain(stream, received)

    assert received == [good]


def test_a_chunk_split_over_messages_is_held_until_all_of_it_checks_out(
    scripted: tuple[ScriptedPeer, Client],
) -> None:
    peer, c = scripted
    good = chunk_of(4)
    serve(peer, [good])
    peer.script[1:] = [dfs_pb2.DownloadReply(data=good[:600]), dfs_pb2.DownloadReply(data=b"?" + good[601:])]
    received: list[bytes] = []

    with pytest.raises(IntegrityError), c.download("f") as stream:
        drain(stream, received)

    assert received == []


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("gap", "previous one ended"),
        ("repeat", "previous one ended"),
        ("missing_last", "received 2 chunks"),
        ("short_chunk", "short"),
        ("data_without_marker", "without the chunk marker"),
    ],
)
def test_chunks_must_tile_the_file_in_order(scripted: tuple[ScriptedPeer, Client], damage: str, message: str) -> None:
    peer, c = scripted
    chunks = [chunk_of(5), chunk_of(6), chunk_of(7)]
    serve(peer, chunks)
    if damage == "gap":
        del peer.script[2:4]  # the second chunk is skipped
    elif damage == "repeat":
        peer.script[2:4] = peer.script[0:2]  # the first chunk again in place of the second
    elif damage == "missing_last":
        del peer.script[4:]
    elif damage == "short_chunk":
        peer.script[3] = dfs_pb2.DownloadReply(data=chunks[1][:10])
    else:
        del peer.script[2]
    received: list[bytes] = []

    with pytest.raises(IntegrityError if damage != "data_without_marker" else Exception, match=message):
        drain(c.download("f"), received)

    assert b"".join(chunks).startswith(b"".join(received))  # whatever was yielded is the file's own bytes


def test_a_range_checks_whole_chunks_and_the_position_of_cut_ones(scripted: tuple[ScriptedPeer, Client]) -> None:
    peer, c = scripted
    chunks = [chunk_of(8), chunk_of(9), chunk_of(10)]
    serve(peer, chunks, offset=990, length=1020)  # the last 10 bytes of chunk 0, chunk 1, 10 bytes of chunk 2
    peer.script[1] = dfs_pb2.DownloadReply(data=chunks[0][990:])
    peer.script[5] = dfs_pb2.DownloadReply(data=chunks[2][:10])

    assert b"".join(c.download("f", offset=990, length=1020)) == b"".join(chunks)[990:2010]

    peer.script[3] = dfs_pb2.DownloadReply(data=b"#" * 1000)  # the middle chunk, covered whole, is wrong
    received: list[bytes] = []
    with pytest.raises(IntegrityError, match="sha256"):
        drain(c.download("f", offset=990, length=1020), received)
    assert received == [chunks[0][990:]]


@pytest.mark.parametrize("markers", [True, False])
def test_a_corrupt_file_in_one_get_reply_raises_before_any_byte_is_yielded(
    scripted: tuple[ScriptedPeer, Client], markers: bool
) -> None:
    peer, c = scripted
    good = [chunk_of(14), chunk_of(15)]
    serve(peer, good, markers=markers)
    peer.one_message = True
    assert b"".join(c.download("f")) == b"".join(good)

    peer.script[-1] = dfs_pb2.DownloadReply(data=b"=" * 1000)
    received: list[bytes] = []
    with pytest.raises(IntegrityError, match="sha256"):
        drain(c.download("f"), received)
    # With markers the intact first chunk may come out; without, the whole file is checked at once.
    assert received == (good[:1] if markers else [])


def test_without_markers_the_whole_file_is_checked_at_the_end(scripted: tuple[ScriptedPeer, Client]) -> None:
    peer, c = scripted
    serve(peer, [chunk_of(11), chunk_of(12)], markers=False)
    peer.script[1] = dfs_pb2.DownloadReply(data=b"~" * 1000)

    stream = c.download("f")
    received: list[bytes] = []
    with pytest.raises(IntegrityError, match="sha256"):
        drain(stream, received)
    assert not stream.chunk_checked and len(received) == 2  # a peer that predates markers: checked last


@pytest.mark.parametrize("how", ["close", "with", "abandon"])
def test_an_iterator_left_early_cancels_the_call_on_the_peer(scripted: tuple[ScriptedPeer, Client], how: str) -> None:
    peer, c = scripted
    serve(peer, [chunk_of(13)], markers=False)
    peer.header.length = peer.header.version.size = 10**9
    peer.endless = True

    if how == "with":
        with c.download("f") as stream:
            next(stream)
    else:
        stream = c.download("f")
        next(stream)
        if how == "close":
            stream.close()
        else:
            del stream  # the reference count drops to zero: the iteration is closed right away

    assert peer.ended.wait(10), "the peer's call went on after the client let go of the download"


def test_download_refuses_a_destination_it_cannot_write(scripted: tuple[ScriptedPeer, Client], tmp_path: Path) -> None:
    peer, c = scripted
    with pytest.raises(InvalidArgument, match="cannot download to a int"):
        c.download("f", 3)  # type: ignore[call-overload]
    with pytest.raises(FileNotFoundError) as missing:
        c.download("f", tmp_path / "no-such-dir" / "f.bin")
    with pytest.raises(IsADirectoryError):
        c.download("f", tmp_path)

    assert missing.value.filename == str(tmp_path / "no-such-dir")
    assert not peer.ended.is_set()  # refused before any call
    assert leftovers(tmp_path) == []
