"""FileService on a real SQLite metadata store and real chunk stores, with the other peers' stores on
this disk (the write and read paths in process): an upload is committed only with its proof of
completeness, limits and name rules hold whatever edge calls, a metadata store known to be down
refuses every call before any data is read, and stat/list/versions/delete/tokens go through it.
Also: neither gRPC servicer maps errors by hand; one decorator does it.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from peer.clock import ManualClock
from peer.errors import (
    FileNotFound,
    InvalidRequest,
    MetadataUnavailable,
    TooLarge,
    Unauthenticated,
    VersionNotFound,
)
from peer.files import ClientLimits, FileService, Trailer, UploadProof
from peer.metadata.open import open_store
from peer.metadata.store import AsyncMetadata, FileRefSpec, VersionSpec
from peer.rpc import client_service, peer_service
from peer.security.tokens import TokenVerifier
from peer.storage.chunkstore import ChunkStore, xxh3_64
from peer.transfer.download import DownloadService
from peer.transfer.peers import DigestAnswer, FetchedChunk
from peer.transfer.upload import UploadService
from tests.fakes import NODES, AllAliveView

CHUNK = 64 * 1024
LATEST = VersionSpec()


class DiskPeers:
    """The other peers of NODES, each a chunk store of its own under one directory."""

    def __init__(self, base: Path) -> None:
        self.stores = {node: ChunkStore(base / node[:4]) for node in NODES[1:]}

    def writer(self) -> DiskPeers:
        return self

    async def put(self, node_id: str, chunk_id: str, data: bytes | memoryview, xxh3: int | None = None) -> None:
        await asyncio.to_thread(self.stores[node_id].put, chunk_id, data, False, xxh3)

    async def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    async def get(self, node_id: str, chunk_id: str) -> FetchedChunk:
        data = await asyncio.to_thread(self.stores[node_id].get, chunk_id)
        return FetchedChunk(data, xxh3_64(data))

    async def has_many(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        raise NotImplementedError

    async def delete(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        raise NotImplementedError

    async def compare_digests(self, node_id: str, from_node: str, ring_digest: str,
                              digests: Sequence[bytes]) -> DigestAnswer:
        raise NotImplementedError

    async def stats(self, node_id: str, timeout_s: float) -> dict[str, Any]:
        raise NotImplementedError


@dataclass
class Health:
    healthy: bool = True
    error: str = ""

    def __call__(self) -> tuple[bool, str]:
        return self.healthy, self.error


@dataclass
class Rig:
    files: FileService
    metadata: AsyncMetadata
    health: Health
    verifier: TokenVerifier

    async def names(self) -> list[str]:
        """What the store holds, read past the service."""
        return [r.name for r in (await self.metadata.list_files("", 1000, "")).files]


def _rig(tmp_path: Path, limits: ClientLimits | None = None) -> Rig:
    metadata = AsyncMetadata(open_store(f"sqlite:///{tmp_path / 'meta.db'}"))
    view = AllAliveView()
    peers = DiskPeers(tmp_path / "peers")
    local = ChunkStore(tmp_path / "local")
    uploads = UploadService(view, local, peers, metadata, ManualClock(),  # type: ignore[arg-type]
                            placement=view.placement, chunk_size=CHUNK, window=4)
    downloads = DownloadService(view, local, peers, metadata,  # type: ignore[arg-type]
                                placement=view.placement, window=4)
    health = Health()
    verifier = TokenVerifier(metadata, cache_s=3600)
    files = FileService(uploads, downloads, metadata, health, limits=limits, verifier=verifier, clock=ManualClock())
    return Rig(files, metadata, health, verifier)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return _rig(tmp_path)


@dataclass
class Feed:
    """An upload's data as an edge hands it over, recording how much of it was read."""

    data: bytes
    piece: int = 10_000
    read: int = field(default=0, init=False)

    async def __call__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.piece):
            self.read += 1
            yield self.data[start:start + self.piece]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def whole(data: bytes) -> UploadProof:
    return UploadProof(len(data), Trailer(len(data), sha(data)))


async def read_all(files: FileService, name: str, version: VersionSpec = LATEST) -> bytes:
    _, _, pieces = await files.open(FileRefSpec(name=name), version)
    return b"".join([bytes(p.data) async for p in pieces])


# ------------------------------------------------------------------------------ completeness proof


@pytest.mark.parametrize("proof", [
    lambda d: UploadProof(declared=len(d)),
    lambda d: UploadProof(trailer=Trailer(len(d), sha(d))),
    lambda d: UploadProof(trailer=Trailer(len(d))),  # size only
    lambda d: UploadProof(len(d), Trailer(len(d), sha(d).upper())),
], ids=["declared", "trailer", "trailer-size-only", "both"])
async def test_an_upload_that_proves_it_is_whole_is_stored(
        rig: Rig, proof: Callable[[bytes], UploadProof]) -> None:
    data = os.urandom(3 * CHUNK + 5)
    record = await rig.files.put("a/b.bin", Feed(data)(), proof(data), content_type="application/x",
                                 user_metadata={"k": "v"})
    assert (record.name, record.size, record.sha256) == ("a/b.bin", len(data), sha(data))
    assert (record.content_type, dict(record.metadata)) == ("application/x", {"k": "v"})
    assert await read_all(rig.files, "a/b.bin") == data


DATA = b"x" * 998 + b"yz"


@pytest.mark.parametrize(("sent", "proof", "words"), [
    (DATA[:999], UploadProof(declared=1000), "truncated"),
    (DATA, UploadProof(declared=999), "more than the 999 bytes"),
    (DATA, UploadProof(trailer=Trailer(999, "")), "truncated"),
    (DATA, UploadProof(trailer=Trailer(1000, sha(b"other"))), "does not match"),
    (DATA[:998], UploadProof(declared=1000, trailer=Trailer(998, sha(DATA[:998]))), "truncated"),
    (DATA, UploadProof(), "without a trailer"),
], ids=["declared-short", "declared-exceeded", "trailer-size", "trailer-sha", "trailer-against-declared",
        "no-proof"])
async def test_an_upload_without_a_matching_proof_commits_nothing(
        rig: Rig, sent: bytes, proof: UploadProof, words: str) -> None:
    with pytest.raises(InvalidRequest, match=words):
        await rig.files.put("f", Feed(sent, piece=100)(), proof)
    assert await rig.names() == []


async def test_a_trailer_the_edge_fills_in_while_the_data_flows_is_checked(rig: Rig) -> None:
    data = os.urandom(2 * CHUNK)
    proof = UploadProof()

    async def stream() -> AsyncIterator[bytes]:
        yield data
        proof.trailer = Trailer(len(data), sha(data))  # the edge reads the trailer after the data

    await rig.files.put("late", stream(), proof)
    assert await read_all(rig.files, "late") == data


# ------------------------------------------------------------------------------------------ limits


async def test_a_declared_size_over_the_limit_is_refused_before_any_data(tmp_path: Path) -> None:
    rig = _rig(tmp_path, ClientLimits(max_file_size=100))
    feed = Feed(b"x" * 50)
    with pytest.raises(TooLarge, match="DFS_MAX_FILE_SIZE"):
        await rig.files.put("big", feed(), UploadProof(declared=101))
    with pytest.raises(TooLarge):
        await rig.files.put("negative", feed(), UploadProof(declared=-1))
    assert feed.read == 0 and await rig.names() == []


async def test_a_stream_over_the_limit_is_refused_and_commits_nothing(tmp_path: Path) -> None:
    rig = _rig(tmp_path, ClientLimits(max_file_size=100))
    data = b"x" * 101
    with pytest.raises(TooLarge, match="DFS_MAX_FILE_SIZE"):
        await rig.files.put("big", Feed(data, piece=10)(), UploadProof(trailer=Trailer(101, sha(data))))
    await rig.files.put("fits", Feed(data[:100])(), UploadProof(100))
    assert await rig.names() == ["fits"]


async def test_user_metadata_over_the_limit_is_refused(tmp_path: Path) -> None:
    rig = _rig(tmp_path, ClientLimits(max_metadata_bytes=10))
    with pytest.raises(InvalidRequest, match="DFS_MAX_METADATA_BYTES"):
        await rig.files.put("m", Feed(b"abc")(), whole(b"abc"), user_metadata={"key": "12345678"})
    await rig.files.put("m", Feed(b"abc")(), whole(b"abc"), user_metadata={"key": "1234567"})
    assert await rig.names() == ["m"]


def test_the_default_limits_are_the_declared_settings() -> None:
    from peer.config import PeerConfig

    limits = ClientLimits()
    assert (limits.max_file_size, limits.max_metadata_bytes, limits.idle_timeout_s) == (
        PeerConfig.max_file_size, PeerConfig.max_metadata_bytes, PeerConfig.client_idle_timeout_s)


@pytest.mark.parametrize("name", ["", "bad\x00name", "tab\tname", "x" * 1025])
async def test_name_rules_hold_for_every_call(rig: Rig, name: str) -> None:
    feed = Feed(b"abc")
    with pytest.raises(InvalidRequest):
        await rig.files.put(name, feed(), whole(b"abc"))
    ref = FileRefSpec(name=name)
    for call in (rig.files.stat(ref, LATEST), rig.files.versions(ref), rig.files.delete(ref),
                 rig.files.open(ref, LATEST)):
        with pytest.raises(InvalidRequest):
            await call
    assert feed.read == 0


async def test_small_reads_stop_at_the_callers_and_the_peers_limit(tmp_path: Path) -> None:
    rig = _rig(tmp_path, ClientLimits(max_get_bytes=2 * CHUNK))
    data = os.urandom(3 * CHUNK)
    await rig.files.put("s", Feed(data)(), whole(data))
    ref = FileRefSpec(name="s")
    small = await rig.files.read_small(ref, LATEST, CHUNK - 1, 10, max_bytes=10)
    assert small.pieces is not None and b"".join(bytes(p.data) for p in small.pieces) == data[CHUNK - 1:CHUNK + 9]
    assert (await rig.files.read_small(ref, LATEST, 0, 11, max_bytes=10)).pieces is None
    too_big = await rig.files.read_small(ref, LATEST, 0, 0, max_bytes=10 * CHUNK)
    assert too_big.pieces is None and (too_big.range.offset, too_big.range.length) == (0, 3 * CHUNK)


# ----------------------------------------------------------------------------------- metadata down


async def test_every_call_is_refused_at_once_while_the_metadata_store_is_down(rig: Rig) -> None:
    await rig.files.put("kept", Feed(b"abc")(), whole(b"abc"))
    rig.health.healthy, rig.health.error = False, "ping timed out"
    feed = Feed(b"new")
    ref = FileRefSpec(name="kept")
    calls: list[Awaitable[object]] = [
        rig.files.put("new", feed(), whole(b"new")),
        rig.files.open(ref, LATEST),
        rig.files.read_small(ref, LATEST, 0, 0, 100),
        rig.files.stat(ref, LATEST),
        rig.files.list_files("", 0, ""),
        rig.files.versions(ref),
        rig.files.delete(ref),
        rig.files.create_token("read", "x"),
        rig.files.list_tokens(),
        rig.files.revoke_token("0" * 16),
        rig.files.token("0" * 16),
    ]
    for call in calls:
        with pytest.raises(MetadataUnavailable, match="ping timed out"):
            await call
    with pytest.raises(MetadataUnavailable):
        rig.files.require_metadata()
    assert feed.read == 0
    assert await rig.names() == ["kept"]
    rig.health.healthy = True
    assert (await rig.files.stat(ref, LATEST)).name == "kept"


# ------------------------------------------------------------------------ stat, list, delete, tokens


async def test_stat_list_versions_and_delete_go_through_the_service(rig: Rig) -> None:
    for name, body in [("d/a", b"1"), ("d/a", b"22"), ("d/a", b"333"), ("d/sub/b", b"b"), ("e", b"e")]:
        await rig.files.put(name, Feed(body)(), whole(body))
    a = FileRefSpec(name="d/a")
    assert (await rig.files.stat(a, LATEST)).size == 3
    assert (await rig.files.stat(a, VersionSpec(number=1))).size == 1
    with pytest.raises(InvalidRequest):
        await rig.files.stat(a, VersionSpec(number=0))
    with pytest.raises(InvalidRequest):
        await rig.files.stat(FileRefSpec(file_id="NOT-HEX"), LATEST)
    page = await rig.files.list_files("d/", 0, "", "/")
    assert ([r.name for r in page.files], page.prefixes) == (["d/a"], ("d/sub/",))
    with pytest.raises(InvalidRequest):
        await rig.files.list_files("", -1, "")
    with pytest.raises(InvalidRequest):
        await rig.files.list_files("", 0, "", "/" * 9)
    assert [r.version for r in await rig.files.versions(a)] == [3, 2, 1]

    deleted = await rig.files.delete(a, VersionSpec(number=2))
    assert [r.version for r in deleted] == [2]
    assert [r.version for r in await rig.files.versions(a)] == [3, 1]
    with pytest.raises(VersionNotFound):
        await rig.files.stat(a, VersionSpec(number=2))
    assert [r.version for r in await rig.files.delete(a)] == [3, 1]
    with pytest.raises(FileNotFound):
        await rig.files.stat(a, LATEST)
    assert await rig.names() == ["d/sub/b", "e"]


async def test_tokens_are_created_listed_and_revoked_at_once_here(rig: Rig) -> None:
    token, record = await rig.files.create_token("write", "ci")
    assert (record.role, record.name) == ("write", "ci")
    assert (await rig.verifier.verify(token)).role == "write"  # now cached for an hour
    assert [r.token_id for r in await rig.files.list_tokens()] == [record.token_id]
    assert await rig.files.token(record.token_id) == record
    assert await rig.files.token("") is None

    revoked = await rig.files.revoke_token(record.token_id)
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthenticated):
        await rig.verifier.verify(token)  # the cached answer was dropped
    with pytest.raises(InvalidRequest):
        await rig.files.revoke_token("not-a-token-id")
    with pytest.raises(InvalidRequest):
        await rig.files.create_token("root", "")


# ------------------------------------------------------------------------ errors mapped in one place


MAPPING_CALLS = {"abort", "abort_with", "set_status", "set_code", "set_details"}


def _called_names(node: ast.AST) -> set[str]:
    names: set[str] = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            func = call.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


@pytest.mark.parametrize("servicer", [client_service.FileStoreServicer, peer_service.PeerChunksServicer])
def test_no_servicer_maps_errors_itself(servicer: type) -> None:
    tree = ast.parse(inspect.getsource(servicer))
    mapping = [
        f"line {handler.lineno}"
        for node in ast.walk(tree) if isinstance(node, ast.Try | ast.TryStar)
        for handler in node.handlers if _called_names(handler) & MAPPING_CALLS
    ]
    assert mapping == [], f"{servicer.__name__} maps errors in a try block: {mapping}"
    assert not _called_names(tree) & MAPPING_CALLS, f"{servicer.__name__} sets a status itself"
