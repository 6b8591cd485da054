"""The mesh's core paths through real peers: upload to any peer, download from any other, versions,
ranges, listing and delete, on every metadata backend.

"sqlite" runs real `dfs-peer` processes sharing one SQLite file; "mongomock" runs the same peers as
in-process nodes sharing one MongoDB-backend store (mongomock cannot cross processes).
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mongomock
import pytest

from client import DfsClient, NotFoundError
from peer.metadata.mongo import MongoStore
from tests.cluster import Cluster
from tests.inproc import InProcCluster

MIB = 1024 * 1024


@pytest.fixture(scope="module", params=["sqlite", "mongomock"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    base = tmp_path_factory.mktemp(f"mesh-{request.param}")
    cluster: Any
    if request.param == "sqlite":
        cluster = Cluster(base).start(3)
    else:
        client: mongomock.MongoClient[Any] = mongomock.MongoClient()
        cluster = InProcCluster(base, MongoStore("mongodb://mock", "filestore", client=client)).start(3)
    try:
        yield cluster
    finally:
        cluster.close()


def blob(size: int, seed: int = 0) -> bytes:
    return (hashlib.sha256(f"{seed}".encode()).digest() * (size // 32 + 1))[:size] if seed else os.urandom(size)


@pytest.mark.parametrize("size", [0, 1, MIB - 1, MIB, MIB + 1, 5 * MIB + 123])
def test_upload_through_one_peer_download_through_another(mesh: Any, size: int) -> None:
    data = os.urandom(size)
    name = f"roundtrip/{size}.bin"
    with mesh.peers[0].client() as c:
        up = c.upload(data, name=name)
    assert up.version.size == size
    assert up.version.sha256 == hashlib.sha256(data).hexdigest()
    assert up.version.chunk_count == (size + MIB - 1) // MIB
    for peer in mesh.peers[1:]:
        with peer.client() as c:
            assert c.read(name) == data


def test_every_chunk_is_durable_on_two_distinct_peers(mesh: Any) -> None:
    data = os.urandom(4 * MIB + 7)
    with mesh.peers[1].client() as c:
        up = c.upload(data, name="placement/file.bin")
    assert len(up.version.chunks) == 5
    offset = 0
    for chunk in up.version.chunks:
        assert len(set(chunk.peers)) == 2
        piece = data[offset:offset + chunk.size]
        assert chunk.chunk_id == hashlib.sha256(piece).hexdigest()
        for node_id in chunk.peers:
            holder = next(p for p in mesh.peers if p.node_id == node_id)
            assert holder.chunk_path(chunk.chunk_id).read_bytes() == piece
        offset += chunk.size
    assert set(up.peers) == {p for ch in up.version.chunks for p in ch.peers}


def test_identical_chunks_are_stored_once(mesh: Any) -> None:
    piece = blob(MIB, seed=7)
    with mesh.peers[0].client() as c:
        up = c.upload(piece * 3, name="dedup/three-same-chunks.bin")
    ids = [ch.chunk_id for ch in up.version.chunks]
    assert len(set(ids)) == 1
    holders = [p for p in mesh.peers if p.chunk_path(ids[0]).exists()]
    assert len(holders) == 2


def test_versions_are_consecutive_and_each_stays_readable(mesh: Any) -> None:
    name = "versions/doc.txt"
    contents = [f"revision {i}\n".encode() * (i + 1) for i in range(4)]
    with mesh.peers[0].client() as c:
        ups = [c.upload(body, name=name, content_type="text/plain", metadata={"rev": str(i)})
               for i, body in enumerate(contents)]
    assert [u.version.version for u in ups] == [1, 2, 3, 4]
    assert len({u.version.file_id for u in ups}) == 1
    with mesh.peers[2].client() as c:
        assert c.read(name) == contents[-1]
        for i, u in enumerate(ups):
            assert c.read(name, version=i + 1) == contents[i]
            assert c.read(name, version=u.version.version_id) == contents[i]
            assert c.read(u.version.file_id, version=i + 1) == contents[i]
        listed = c.versions(name)
        assert [v.version for v in listed] == [4, 3, 2, 1]
        assert [v.latest for v in listed] == [True, False, False, False]
        info = c.stat(name, version=2)
        assert (info.content_type, info.metadata) == ("text/plain", {"rev": "1"})


@pytest.mark.parametrize(("offset", "length"), [
    (0, 10), (MIB - 5, 10), (MIB, MIB), (123, 2 * MIB), (3 * MIB - 1, 0), (3 * MIB, 0), (2 * MIB + 17, 10 * MIB),
])
def test_byte_ranges(mesh: Any, offset: int, length: int) -> None:
    data = blob(3 * MIB, seed=3)
    with mesh.peers[0].client() as c:
        c.upload(data, name="ranges/three-mib.bin")
    end = len(data) if length == 0 else offset + length
    with mesh.peers[1].client() as c:
        assert c.read("ranges/three-mib.bin", offset=offset, length=length) == data[offset:end]


def test_range_past_the_end_is_rejected(mesh: Any) -> None:
    with mesh.peers[0].client() as c:
        c.upload(b"short", name="ranges/short.txt")
        with pytest.raises(Exception, match="beyond the end"):
            c.read("ranges/short.txt", offset=6)


def test_list_by_prefix_with_paging(mesh: Any) -> None:
    names = [f"listing/{i:03d}.txt" for i in range(25)] + ["listing-other/x.txt"]
    with mesh.peers[0].client() as c:
        for n in names:
            c.upload(n.encode(), name=n)
    with mesh.peers[2].client() as c:
        listed = [f.name for f in c.list(prefix="listing/", page_size=7)]
        assert listed == sorted(names[:-1])
        assert all(f.latest for f in c.list(prefix="listing/"))


def test_delete_a_version_then_the_whole_file(mesh: Any) -> None:
    name = "delete/me.bin"
    shared = blob(MIB, seed=11)
    with mesh.peers[0].client() as c:
        c.upload(shared + b"one", name=name)
        v2 = c.upload(shared + b"two", name=name)
        deleted = c.delete(name, version=1)
        assert [d.version for d in deleted] == [1]
    with mesh.peers[1].client() as c:
        with pytest.raises(NotFoundError):
            c.read(name, version=1)
        assert c.read(name) == shared + b"two"  # the chunk v1 shared with v2 is still there
        assert [v.version for v in c.versions(name)] == [2]
        c.delete(v2.version.file_id)
        with pytest.raises(NotFoundError):
            c.stat(name)
        assert name not in [f.name for f in c.list(prefix="delete/")]


def test_concurrent_uploads_to_one_name_get_distinct_consecutive_versions(mesh: Any) -> None:
    name = "race/one-name.txt"
    results: list[int] = []
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            with mesh.peers[i % 3].client() as c:
                results.append(c.upload(f"writer {i}".encode(), name=name).version.version)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(results) == list(range(1, 13))
    with mesh.peers[0].client() as c:
        bodies = {c.read(name, version=v) for v in range(1, 13)}
    assert bodies == {f"writer {i}".encode() for i in range(12)}


def test_upload_of_a_path_keeps_its_basename(mesh: Any, tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    path.write_bytes(b"a,b\n1,2\n")
    with mesh.peers[0].client() as c:
        up = c.upload(path)
        assert up.version.name == "report.csv"
        assert c.read("report.csv") == b"a,b\n1,2\n"


def test_cluster_status_lists_every_member_and_one_ring(mesh: Any) -> None:
    digests = set()
    for peer in mesh.peers:
        with DfsClient(peer.grpc_addr, timeout=5) as c:
            st = c.status()
        assert st.node_id == peer.node_id
        assert {m.node_id for m in st.members} == {p.node_id for p in mesh.peers}
        assert all(m.state == "alive" and m.on_ring for m in st.members)
        assert st.replicas == 2 and st.vnodes == 150
        assert st.metadata_healthy
        digests.add(st.ring_digest)
    assert len(digests) == 1


def test_an_upload_interrupted_by_ctrl_c_is_never_committed(mesh: Any) -> None:
    """SIGINT while the SDK waits for an upload raises KeyboardInterrupt and cancels the call: the rest
    of the data and the trailer are never sent, so no version appears."""
    if not isinstance(mesh, Cluster):
        pytest.skip("the in-process cluster shares this process, which the signal would interrupt")
    gate = threading.Event()
    pulled: list[int] = []

    def pieces() -> Iterator[bytes]:  # blocks in gRPC's sending thread, once the call is under way
        for i in range(8):
            pulled.append(i)
            if i == 3:
                gate.wait(30)
            yield bytes([i]) * 1000

    armed = threading.Event()

    def on_sigint(_signum: int, _frame: object) -> None:
        if armed.is_set():  # a late signal must not interrupt the rest of the session
            raise KeyboardInterrupt

    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    previous = signal.signal(signal.SIGINT, on_sigint)
    with mesh.peers[0].client(timeout=30) as c:
        armed.set()
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                c.upload(pieces(), name="interrupted/ctrl-c")
        finally:
            armed.clear()
            timer.cancel()
            signal.signal(signal.SIGINT, previous)
            gate.set()
        c.upload(b"after", name="interrupted/after")  # the client goes on working
        assert [v.name for v in c.list("interrupted/")] == ["interrupted/after"]
    assert pulled == [0, 1, 2, 3], "no piece was read after the interrupt"
