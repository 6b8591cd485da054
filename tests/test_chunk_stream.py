"""Chunk streams between peers, against an in-process serving peer (its HTTP listener and chunk store).

What a sending peer relies on: a put is acknowledged only once the chunk is durable, and only if its
bytes are the ones sent; a get returns the verified copy with its checksum, or says there is none;
only peers get in (cluster secret or mutual TLS), and a forged or replayed frame ends the stream; a
peer of the previous version is served over gRPC, another stream version is refused in one line;
stalled and abandoned streams give back their memory; a chunk larger than the limit is refused
before its body is read.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from peer.errors import ChunkCorrupt, ChunkNotFound, PeerUnavailable
from peer.http.chunks import ChunkServing, StreamChunkPeers, chunks_app
from peer.http.chunks.client import RETRY_STREAM_S
from peer.http.chunks.dial import open_stream
from peer.http.chunks.frames import HEADER_BYTES, ErrorCode, Frame, Kind, decode_header, encode_header
from peer.http.chunks.upgrade import OPEN_PURPOSE, PROTOCOL, PROTOCOL_V1, PROTOCOLS
from peer.http.gossip_wire import AUTH_HEADER
from peer.http.server import HttpServer, Mount
from peer.http.tls import client_ssl_context, server_ssl_context
from peer.security.certs import init_certs
from peer.security.peerauth import PeerSigner
from peer.storage.chunkstore import ChunkStore, xxh3_64
from peer.transfer.budget import ByteBudget
from peer.transfer.peers import DigestAnswer, FetchedChunk
from tests.waiting import wait_until

MIB = 1024 * 1024
NODE = "n" * 32
SECRET = "chunk-stream-test-secret-0123"


def chunk(size: int = MIB) -> tuple[str, bytes]:
    data = os.urandom(size)
    return hashlib.sha256(data).hexdigest(), data


@dataclass
class RecordingFallback:
    """The gRPC side of a peer, as StreamChunkPeers sees it: it records what reaches it."""

    puts: list[str] = field(default_factory=list)
    gets: list[str] = field(default_factory=list)
    writers: int = 0
    closed: bool = False

    def writer(self) -> Any:
        self.writers += 1
        return self

    async def put(self, node_id: str, chunk_id: str, data: bytes | memoryview, xxh3: int | None = None) -> None:
        self.puts.append(chunk_id)

    async def get(self, node_id: str, chunk_id: str) -> FetchedChunk:
        self.gets.append(chunk_id)
        raise ChunkNotFound(chunk_id)

    async def has_many(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        return set()

    async def delete(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        return set()

    async def compare_digests(self, node_id: str, from_node: str, ring_digest: str,
                              digests: Sequence[bytes]) -> DigestAnswer:
        return DigestAnswer(False)

    async def stats(self, node_id: str, timeout_s: float) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        pass


@dataclass
class Holder:
    """A serving peer: its store, its stream budget, its HTTP listener's address."""

    store: ChunkStore
    budget: ByteBudget
    addr: str
    server: HttpServer


async def serve(tmp: Path, *, signer: PeerSigner | None = None, budget_bytes: int = 4 * MIB,
                body_timeout_s: float = 5.0, idle_timeout_s: float = 30.0, max_body: int = 2 * MIB,
                mounts: Sequence[Mount] | None = None, ssl_context: ssl.SSLContext | None = None,
                require_peer_cert: bool = False, protocols: tuple[str, ...] = PROTOCOLS) -> Holder:
    store = ChunkStore(tmp)
    budget = ByteBudget(budget_bytes)
    server = HttpServer()
    serving = ChunkServing(store, budget, max_body, body_timeout_s=body_timeout_s, idle_timeout_s=idle_timeout_s)
    for mount in mounts if mounts is not None else [chunks_app(serving, signer=signer, protocols=protocols,
                                                                  require_peer_cert=require_peer_cert)]:
        server.mount(mount)
    port = await server.start("127.0.0.1", 0, ssl_context=ssl_context)
    return Holder(store, budget, f"127.0.0.1:{port}", server)


def client(holder: Holder, fallback: RecordingFallback | None = None, *, timeout_s: float = 5.0,
           signer: PeerSigner | None = None, ssl_context: ssl.SSLContext | None = None) -> StreamChunkPeers:
    return StreamChunkPeers(lambda _node: holder.addr, fallback or RecordingFallback(), timeout_s=timeout_s,
                            max_body=2 * MIB, signer=signer, ssl_context=ssl_context)


@pytest.fixture
async def signed(tmp_path: Path) -> AsyncIterator[tuple[Holder, StreamChunkPeers, RecordingFallback]]:
    holder = await serve(tmp_path / "holder", signer=PeerSigner(SECRET))
    fallback = RecordingFallback()
    peers = client(holder, fallback, signer=PeerSigner(SECRET))
    yield holder, peers, fallback
    await peers.close()
    await holder.server.stop()


# ------------------------------------------------------------------------------ puts and gets


async def test_a_put_is_durable_once_acknowledged_and_reads_back_verified(
        signed: tuple[Holder, StreamChunkPeers, RecordingFallback]) -> None:
    holder, peers, fallback = signed
    chunks = [chunk() for _ in range(5)] + [chunk(10), chunk(0)]
    writer = peers.writer()
    for chunk_id, data in chunks:
        await writer.put(NODE, chunk_id, memoryview(data), xxh3_64(data))
        assert holder.store.get(chunk_id) == data  # on disk, verified, when put() returned
    await writer.close()
    for chunk_id, data in chunks:
        fetched = await peers.get(NODE, chunk_id)
        # The body tag vouches for the body, so its XXH3-64 may stand for the SHA-256.
        assert bytes(fetched.data) == data and fetched.xxh3 == xxh3_64(data)
    assert fallback.puts == fallback.gets == [] and holder.budget.used == 0


async def test_a_body_replaced_on_the_wire_fails_its_body_tag_and_ends_the_stream(
        signed: tuple[Holder, StreamChunkPeers, RecordingFallback]) -> None:
    """An on-path attacker swaps a PUT's body for bytes crafted to match the announced XXH3-64 (no
    cryptographic hash): the header is the sender's own, but the body tag is over what it sent."""
    holder, _peers, _ = signed
    conn = await open_stream(holder.addr, 2 * MIB, signer=PeerSigner(SECRET))
    try:
        chunk_id, data = chunk(4096)
        forged = os.urandom(4096)
        header = conn._sealer.seal(encode_header(Frame(Kind.PUT, chunk_id, len(forged), xxh3_64(forged))))
        await conn.stream.write(header, forged, conn._sealer.tag_body(data))
        answer, reason = await asyncio.wait_for(conn.answer(), 5)
        assert (answer.kind, answer.code) == (Kind.ERROR, ErrorCode.INVALID) and b"body failed" in reason
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(conn.answer(), 5)
        assert not holder.store.has(chunk_id) and holder.budget.used == 0
    finally:
        conn.stream.abort()


async def test_on_a_previous_version_stream_crafted_bytes_fail_the_receivers_sha256(tmp_path: Path) -> None:
    """dfs-chunks/1 (a requester of the previous version) has no body tag: the frame tag covers the
    header only, so bytes crafted to match the announced checksum must fail the SHA-256 check of the id."""
    holder = await serve(tmp_path / "h", signer=PeerSigner(SECRET))
    conn = await open_stream(holder.addr, 2 * MIB, signer=PeerSigner(SECRET), protocols=(PROTOCOL_V1,))
    try:
        assert not conn.trusts_checksums
        chunk_id, data = chunk(4096)
        forged = os.urandom(4096)
        await conn.send(Frame(Kind.PUT, chunk_id, len(forged), xxh3_64(forged)), forged)
        answer, _reason = await asyncio.wait_for(conn.answer(), 5)
        conn.done()
        assert (answer.kind, answer.code) == (Kind.ERROR, ErrorCode.CORRUPT)
        assert not holder.store.has(chunk_id)
        await conn.send(Frame(Kind.PUT, chunk_id, len(data), xxh3_64(data)), data)  # the stream goes on
        answer, _reason = await asyncio.wait_for(conn.answer(), 5)
        assert answer.kind == Kind.STORED and holder.store.get(chunk_id) == data
    finally:
        conn.stream.abort()
        await holder.server.stop()


async def test_a_peer_serving_only_the_previous_stream_version_is_opened_with_it(tmp_path: Path) -> None:
    """A rolling upgrade: this version asks for dfs-chunks/2, is told 426 and dfs-chunks/1, opens again
    with /1, and then checks every body it gets by SHA-256 (no body tags there)."""
    holder = await serve(tmp_path / "old", signer=PeerSigner(SECRET), protocols=(PROTOCOL_V1,))
    fallback = RecordingFallback()
    peers = client(holder, fallback, signer=PeerSigner(SECRET))
    try:
        answer = await _raw_opening(holder.addr, {}, protocol=PROTOCOL)
        assert answer.startswith("HTTP/1.1 426") and f"Upgrade: {PROTOCOL_V1}" in answer
        chunk_id, data = chunk()
        await peers.put(NODE, chunk_id, data, xxh3_64(data))
        fetched = await peers.get(NODE, chunk_id)
        assert bytes(fetched.data) == data and fetched.xxh3 is None  # the requester checks SHA-256
        assert holder.store.get(chunk_id) == data and fallback.puts == fallback.gets == []
    finally:
        await peers.close()
        await holder.server.stop()


async def test_without_peer_authentication_the_checksum_stands_for_the_hash(tmp_path: Path) -> None:
    """No attacker is assumed (a trusted network, or TLS): the XXH3-64 saves the receiver a SHA-256 pass."""
    holder = await serve(tmp_path / "h")
    peers = client(holder)
    try:
        chunk_id, data = chunk(4096)
        with pytest.raises(ChunkCorrupt):  # bytes damaged on the way no longer match the sender's checksum
            await peers.put(NODE, chunk_id, data, xxh3_64(data) ^ 1)
        await peers.put(NODE, chunk_id, data, xxh3_64(data))
        fetched = await peers.get(NODE, chunk_id)
        assert bytes(fetched.data) == data and fetched.xxh3 == xxh3_64(data)
    finally:
        await peers.close()
        await holder.server.stop()


async def test_puts_in_parallel_share_pooled_streams(signed: tuple[Holder, StreamChunkPeers, RecordingFallback],
                                                      ) -> None:
    holder, peers, _ = signed
    chunks = [chunk(256 * 1024) for _ in range(24)]
    await asyncio.gather(*(peers.put(NODE, i, d, xxh3_64(d)) for i, d in chunks))
    assert all(holder.store.get(i) == d for i, d in chunks)
    await asyncio.gather(*(peers.put(NODE, i, d, xxh3_64(d)) for i, d in chunks))  # content addressed: again


async def test_bytes_damaged_in_transfer_are_refused_and_not_stored(
        signed: tuple[Holder, StreamChunkPeers, RecordingFallback]) -> None:
    holder, peers, _ = signed
    chunk_id, data = chunk()
    damaged = bytearray(data)
    damaged[1000] ^= 1
    with pytest.raises(ChunkCorrupt):
        await peers.put(NODE, chunk_id, damaged, xxh3_64(data))
    other_id, _ = chunk()
    with pytest.raises(ChunkCorrupt):  # no checksum: the id itself is checked (SHA-256)
        await peers.put(NODE, other_id, data)
    assert not holder.store.has(chunk_id) and not holder.store.has(other_id)
    await peers.put(NODE, chunk_id, data)  # the same stream keeps serving
    assert holder.store.get(chunk_id) == data


async def test_a_missing_or_corrupt_copy_is_not_found(signed: tuple[Holder, StreamChunkPeers, RecordingFallback],
                                                      ) -> None:
    holder, peers, _ = signed
    with pytest.raises(ChunkNotFound):
        await peers.get(NODE, "ab" * 32)
    chunk_id, data = chunk(4096)
    await peers.put(NODE, chunk_id, data)
    holder.store.path(chunk_id).write_bytes(b"rotten" + data[6:])
    with pytest.raises(ChunkNotFound):
        await peers.get(NODE, chunk_id)
    assert holder.store.quarantined == 1


async def test_control_calls_and_close_go_to_the_fallback(
        signed: tuple[Holder, StreamChunkPeers, RecordingFallback]) -> None:
    _, peers, fallback = signed
    assert await peers.has_many(NODE, ["ab" * 32]) == set()
    assert (await peers.compare_digests(NODE, "me", "d", [b""] * 256)).ring_mismatch is False
    await peers.close()
    assert fallback.closed


# ------------------------------------------------------------------------------ who may open a stream


async def test_a_client_without_the_cluster_secret_is_refused(tmp_path: Path) -> None:
    holder = await serve(tmp_path / "h", signer=PeerSigner(SECRET))
    try:
        for signer in (None, PeerSigner("another-cluster-secret-0123")):
            peers = client(holder, signer=signer)
            chunk_id, data = chunk(1000)
            with pytest.raises(PeerUnavailable, match="refused: HTTP 401"):
                await peers.put(NODE, chunk_id, data)
            await peers.close()
            assert not holder.store.has(chunk_id)
    finally:
        await holder.server.stop()


async def test_an_answer_not_signed_for_our_opening_is_refused(tmp_path: Path) -> None:
    """A peer that accepts a stream must prove it holds the secret, or puts could be acknowledged by
    anyone on the path."""
    holder = await serve(tmp_path / "h")  # accepts anyone and signs nothing
    try:
        peers = client(holder, signer=PeerSigner(SECRET))
        chunk_id, data = chunk(1000)
        with pytest.raises(PeerUnavailable, match="not opened: .*credential"):
            await peers.put(NODE, chunk_id, data)
        await peers.close()
    finally:
        await holder.server.stop()


async def test_a_replayed_opening_is_refused(tmp_path: Path) -> None:
    holder = await serve(tmp_path / "h", signer=PeerSigner(SECRET))
    try:
        credential = PeerSigner(SECRET).sign(OPEN_PURPOSE, PROTOCOL.encode())
        statuses = [await _raw_opening(holder.addr, {AUTH_HEADER: credential}) for _ in range(2)]
        assert statuses[0].startswith("HTTP/1.1 101") and statuses[1].startswith("HTTP/1.1 401"), statuses
    finally:
        await holder.server.stop()


async def test_a_forged_frame_ends_the_stream(tmp_path: Path) -> None:
    """Without TLS an on-path attacker can write into the connection: a frame without the session's tag
    (here a PUT with a checksum that lets any bytes pass) stores nothing and ends the stream."""
    holder = await serve(tmp_path / "h", signer=PeerSigner(SECRET))
    try:
        conn = await open_stream(holder.addr, 2 * MIB, signer=PeerSigner(SECRET))
        data = b"planted"
        forged = Frame(Kind.PUT, "ab" * 32, len(data), xxh3_64(data))
        await conn.stream.write(encode_header(forged), data)  # tag left zero: not sealed
        answer, reason = await asyncio.wait_for(conn.answer(), 5)
        assert (answer.kind, answer.code) == (Kind.ERROR, ErrorCode.INVALID) and b"authentication" in reason
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(conn.answer(), 5)
        assert not holder.store.has("ab" * 32)
    finally:
        await holder.server.stop()


async def test_mutual_tls_streams_need_a_cluster_certificate(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    init_certs(certs, 2)
    other = tmp_path / "other"
    init_certs(other, 1)
    ca = certs / "ca.crt"
    server_ctx = server_ssl_context(certs / "peer-1.crt", certs / "peer-1.key", ca)
    holder = await serve(tmp_path / "h", ssl_context=server_ctx, require_peer_cert=True)
    try:
        good = client(holder, ssl_context=client_ssl_context(certs / "peer-2.crt", certs / "peer-2.key", ca))
        chunk_id, data = chunk()
        await good.put(NODE, chunk_id, data, xxh3_64(data))
        assert bytes((await good.get(NODE, chunk_id)).data) == data
        await good.close()
        no_cert = ssl.create_default_context(cafile=ca)
        foreign = client_ssl_context(other / "peer-1.crt", other / "peer-1.key", ca)
        for ctx, words in ((no_cert, "HTTP 403"), (foreign, "cannot reach")):
            peers = client(holder, ssl_context=ctx)
            other_id, other_data = chunk(1000)
            with pytest.raises(PeerUnavailable, match=words):
                await peers.put(NODE, other_id, other_data)
            await peers.close()
            assert not holder.store.has(other_id)
    finally:
        await holder.server.stop()


# ------------------------------------------------------------------------------ versions


async def test_a_peer_of_the_previous_version_is_served_over_the_fallback(tmp_path: Path) -> None:
    """A peer without chunk streams answers 404 on its HTTP listener: its chunks go over gRPC, and
    after RETRY_STREAM_S the stream is tried again (it may have been upgraded meanwhile)."""
    old = await serve(tmp_path / "old", mounts=[_gossip_only()])
    now = [0.0]
    fallback = RecordingFallback()
    peers = StreamChunkPeers(lambda _node: old.addr, fallback, timeout_s=5, max_body=2 * MIB,
                             clock=lambda: now[0])
    try:
        first, second = chunk(1000), chunk(1000)
        await peers.put(NODE, *first)
        writer = peers.writer()
        await writer.put(NODE, *second)
        await writer.close()
        with pytest.raises(ChunkNotFound):
            await peers.get(NODE, first[0])
        assert fallback.puts == [first[0], second[0]] and fallback.gets == [first[0]]
        assert fallback.writers == 1
        now[0] += RETRY_STREAM_S + 1
        await peers.put(NODE, *chunk(10))
        assert len(fallback.puts) == 3  # tried the stream again, found it still missing
    finally:
        await peers.close()
        await old.server.stop()


async def test_another_stream_version_is_refused_in_one_line(tmp_path: Path) -> None:
    holder = await serve(tmp_path / "h")
    try:
        answer = await _raw_opening(holder.addr, {}, protocol="dfs-chunks/3")
        assert answer.startswith("HTTP/1.1 426") and f"Upgrade: {PROTOCOL}" in answer
        fallback = RecordingFallback()
        newer = await serve(tmp_path / "newer", mounts=[_speaks("dfs-chunks/3")])
        peers = client(newer, fallback)
        with pytest.raises(PeerUnavailable, match="refused: HTTP 426 .*speaks dfs-chunks/3") as err:
            await peers.put(NODE, *chunk(10))
        assert "\n" not in str(err.value) and fallback.puts == []
        await peers.close()
        await newer.server.stop()
    finally:
        await holder.server.stop()


# ------------------------------------------------------------------------------ limits and timeouts


async def test_puts_wait_for_the_receivers_budget(tmp_path: Path) -> None:
    """The receiver sets a body's bytes aside before reading it; while its budget is spent it reads
    nothing more, so the sender waits instead of the receiver's memory growing."""
    holder = await serve(tmp_path / "h", budget_bytes=MIB)
    peers = client(holder)
    try:
        await holder.budget.acquire(MIB)  # another stream holds the whole budget
        chunk_id, data = chunk()
        put = asyncio.create_task(peers.put(NODE, chunk_id, data, xxh3_64(data)))
        await asyncio.sleep(0.2)  # bounded: shows the put is held while the budget is spent
        assert not put.done() and not holder.store.has(chunk_id)
        holder.budget.release(MIB)
        await asyncio.wait_for(put, 5)
        assert holder.store.get(chunk_id) == data
        await wait_until(lambda: holder.budget.used == 0, 5)
    finally:
        await peers.close()
        await holder.server.stop()


async def test_a_chunk_over_the_limit_is_refused_before_its_body(tmp_path: Path) -> None:
    holder = await serve(tmp_path / "h", max_body=64 * 1024)
    peers = client(holder)
    try:
        chunk_id, data = chunk(65 * 1024)
        with pytest.raises(PeerUnavailable, match="INVALID"):
            await peers.put(NODE, chunk_id, data, xxh3_64(data))
        assert not holder.store.has(chunk_id) and holder.budget.used == 0
    finally:
        await peers.close()
        await holder.server.stop()


async def test_a_stalled_body_is_dropped_and_its_memory_given_back(tmp_path: Path) -> None:
    holder = await serve(tmp_path / "h", body_timeout_s=0.3)
    try:
        conn = await open_stream(holder.addr, 2 * MIB)
        chunk_id, data = chunk()
        await conn.send(Frame(Kind.PUT, chunk_id, len(data), xxh3_64(data)), data[: len(data) // 2])
        await wait_until(lambda: holder.budget.used == len(data), 5)
        conn.stream.watch()  # a sender reads nothing until it sends a whole body: look for the close
        await asyncio.wait_for(conn.stream.wait_closed(), 5)  # the receiver gave up on the rest
        await wait_until(lambda: holder.budget.used == 0, 5)
        assert not holder.store.has(chunk_id)
    finally:
        await holder.server.stop()


async def test_a_sender_that_goes_away_mid_chunk_stores_nothing(tmp_path: Path) -> None:
    """An upload whose client disconnects is cancelled; its puts in flight abort their streams."""
    holder = await serve(tmp_path / "h")
    writing, release = threading.Event(), threading.Event()
    real_put = holder.store.put

    def slow_put(*args: Any) -> Any:  # the receiver is mid-write when the sender goes away
        writing.set()
        release.wait(5)
        return real_put(*args)

    holder.store.put = slow_put  # type: ignore[method-assign]
    peers = client(holder)
    try:
        chunk_id, data = chunk(2 * MIB)
        put = asyncio.create_task(peers.put(NODE, chunk_id, data, xxh3_64(data)))
        await wait_until(writing.is_set, 5)
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
        release.set()
        await wait_until(lambda: holder.budget.used == 0, 5)
        assert not holder.store.has(chunk_id) or holder.store.get(chunk_id) == data
    finally:
        await peers.close()
        await holder.server.stop()


async def test_an_unanswered_call_ends_at_the_call_timeout(tmp_path: Path) -> None:
    """A peer that accepts connections but never answers (SIGSTOPped, partitioned) costs one timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    addr = f"127.0.0.1:{listener.getsockname()[1]}"
    peers = StreamChunkPeers(lambda _node: addr, RecordingFallback(), timeout_s=0.5, max_body=MIB)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(PeerUnavailable, match="within 0.5 s"):
            await peers.get(NODE, "ab" * 32)
        assert loop.time() - started < 3
    finally:
        await peers.close()
        listener.close()


async def test_an_idle_stream_closed_by_the_peer_is_replaced(tmp_path: Path) -> None:
    holder = await serve(tmp_path / "h", idle_timeout_s=0.2)
    peers = client(holder)
    try:
        first = chunk(1000)
        await peers.put(NODE, *first)
        idle = peers._idle[holder.addr][0]
        await asyncio.wait_for(idle.stream.wait_closed(), 5)
        second = chunk(1000)
        await peers.put(NODE, *second)
        assert holder.store.get(second[0]) == second[1]
    finally:
        await peers.close()
        await holder.server.stop()


# ------------------------------------------------------------------------------ helpers


def _gossip_only() -> Mount:
    """The HTTP listener of a peer that predates chunk streams."""

    async def gossip(_request: web.Request) -> web.Response:
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("", gossip)
    return Mount("/gossip", app)


def _speaks(protocol: str) -> Mount:
    """A later peer that speaks only `protocol` and refuses every other as this version does."""

    async def refuse(_request: web.Request) -> web.Response:
        return web.Response(status=426, text=f"this peer speaks {protocol}",
                            headers={"Upgrade": protocol, "Connection": "Upgrade"})

    app = web.Application()
    app.router.add_get("", refuse)
    return Mount("/peer/chunks", app)


async def _raw_opening(addr: str, headers: dict[str, str], protocol: str = PROTOCOL) -> str:
    """Sends one opening by hand and returns the answer's head (and whatever came with it)."""
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        lines = ["GET /peer/chunks HTTP/1.1", f"Host: {addr}", "Connection: Upgrade", f"Upgrade: {protocol}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return head.decode("latin-1")
    finally:
        writer.close()


def test_frame_headers_round_trip() -> None:
    for frame in (Frame(Kind.PUT, "ab" * 32, MIB, 7), Frame(Kind.GET, "cd" * 32), Frame(Kind.STORED, "00" * 32),
                  Frame(Kind.DATA, "ef" * 32, 10, 0), Frame(Kind.ERROR, "ab" * 32, 3, code=ErrorCode.CORRUPT)):
        raw = encode_header(frame)
        assert len(raw) == HEADER_BYTES and decode_header(raw, MIB) == frame
