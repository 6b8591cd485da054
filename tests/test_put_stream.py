"""PutChunkStream, the upload's replication stream, against an in-process peer server: acknowledgements,
a rejected chunk failing the stream, and the unary fallback for peers that do not know the method."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest

from peer.errors import ChunkCorrupt
from peer.rpc import wire
from peer.rpc.peer_client import UNARY_PUTS, GrpcChunkPeers
from peer.rpc.peer_service import PeerChunksServicer, add_to_server
from peer.storage.chunkstore import ChunkStore, xxh3_64

MIB = 1024 * 1024
NODE = "n" * 32


async def _no_digests(*_args: object) -> tuple[bool, dict[int, list[str]]]:
    return False, {}


async def _serve(store: ChunkStore, register: Callable[[PeerChunksServicer, grpc.aio.Server], None]) -> tuple[
        grpc.aio.Server, str]:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 4 * MIB)])
    register(PeerChunksServicer(store, _no_digests, dict, NODE), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[tuple[ChunkStore, GrpcChunkPeers]]:
    store = ChunkStore(tmp_path)
    server, addr = await _serve(store, add_to_server)
    peers = GrpcChunkPeers(lambda _node: addr, 5.0, 4 * MIB)
    yield store, peers
    await peers.close()
    await server.stop(None)


def _chunk(size: int = MIB) -> tuple[str, bytes]:
    data = os.urandom(size)
    return hashlib.sha256(data).hexdigest(), data


async def test_stream_puts_are_durable_when_acknowledged(peer: tuple[ChunkStore, GrpcChunkPeers]) -> None:
    store, peers = peer
    chunks = [_chunk() for _ in range(UNARY_PUTS + 6)] + [_chunk(10)]
    writer = peers.writer()
    for chunk_id, data in chunks:
        await writer.put(NODE, chunk_id, memoryview(data))
        assert store.get(chunk_id) == data
    again = chunks[0]
    await writer.put(NODE, *again)  # a chunk sent twice (content addressing) is acknowledged twice
    await writer.close()


async def test_a_corrupt_chunk_fails_its_put_and_the_next_put_opens_a_new_stream(
    peer: tuple[ChunkStore, GrpcChunkPeers],
) -> None:
    store, peers = peer
    writer = peers.writer()
    for chunk_id, data in [_chunk(100) for _ in range(UNARY_PUTS)]:  # the next puts go by the stream
        await writer.put(NODE, chunk_id, data)
    good_id, good = _chunk()
    bad_id, _ = _chunk()
    with pytest.raises(ChunkCorrupt):
        await writer.put(NODE, bad_id, good)  # bytes that do not hash to the id
    assert not store.has(bad_id)
    await writer.put(NODE, good_id, good)
    assert store.get(good_id) == good
    writer.abort()


async def test_bytes_damaged_after_the_sender_checked_them_are_refused(
    peer: tuple[ChunkStore, GrpcChunkPeers],
) -> None:
    """An uploading peer sends the XXH3-64 of each chunk it has hashed; the receiver stores the chunk
    only if the bytes that arrived match it, by unary put and by stream put alike."""
    store, peers = peer
    writer = peers.writer()
    for _ in range(UNARY_PUTS + 2):
        chunk_id, data = _chunk()
        damaged = bytearray(data)
        damaged[len(data) // 2] ^= 0x01
        with pytest.raises(ChunkCorrupt):
            await writer.put(NODE, chunk_id, bytes(damaged), xxh3_64(data))
        assert not store.has(chunk_id)
        await writer.put(NODE, chunk_id, data, xxh3_64(data))
        assert store.get(chunk_id) == data
    writer.abort()


async def test_a_holder_sends_the_transfer_checksum_of_what_it_read(
    peer: tuple[ChunkStore, GrpcChunkPeers],
) -> None:
    store, peers = peer
    chunk_id, data = _chunk()
    store.put(chunk_id, data)
    fetched = await peers.get(NODE, chunk_id)
    assert bytes(fetched.data) == data and fetched.xxh3 == xxh3_64(data)


async def test_peers_without_the_stream_method_get_unary_puts(tmp_path: Path) -> None:
    def unary_only(servicer: PeerChunksServicer, server: grpc.aio.Server) -> None:
        handlers = {"PutChunk": grpc.unary_unary_rpc_method_handler(
            servicer.PutChunk, request_deserializer=wire.decode_chunk,
            response_serializer=lambda reply: reply.SerializeToString())}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("dfs.v1.PeerChunks", handlers),))

    store = ChunkStore(tmp_path)
    server, addr = await _serve(store, unary_only)
    peers = GrpcChunkPeers(lambda _node: addr, 5.0, 4 * MIB)
    try:
        writer = peers.writer()
        for chunk_id, data in [_chunk() for _ in range(UNARY_PUTS + 2)]:
            await writer.put(NODE, chunk_id, data)
            assert store.get(chunk_id) == data
        await writer.close()
    finally:
        await peers.close()
        await server.stop(None)
