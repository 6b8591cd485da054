"""ChunkPeers over gRPC: how this peer reaches the PeerChunks service of the others.

One channel per peer address, reused by every call. gRPC failures are translated here, once, into
domain errors (PeerUnavailable, ChunkNotFound, ChunkCorrupt) so services never see grpc types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc

from peer.errors import ChunkCorrupt, ChunkNotFound, DfsError, PeerUnavailable
from peer.rpc.wire import Buffer, ChunkData, decode_chunk, encode_chunk
from peer.transfer.peers import DigestAnswer
from proto import dfs_pb2 as pb
from proto import dfs_pb2_grpc as pb_grpc


def channel_options(max_message: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", max_message),
        ("grpc.max_receive_message_length", max_message),
        ("grpc.so_reuseport", 0),
    ]


def server_options(max_message: int) -> list[tuple[str, int]]:
    """The peer's server: as channels, plus no bandwidth-delay probing. BDP probing grows each
    stream's receive window to several MiB, which many concurrent uploads turn into hundreds of MiB
    of buffered data; the fixed window keeps a peer's memory flat."""
    return [*channel_options(max_message), ("grpc.http2.bdp_probe", 0)]


PUT_CHUNK_METHOD = "/dfs.v1.PeerChunks/PutChunk"
GET_CHUNKS_METHOD = "/dfs.v1.PeerChunks/GetChunks"


class _Channel:
    """One channel to a peer with its stub, plus the chunk-data calls framed by `wire`: PutChunk (the
    replication hot path sends every uploaded byte to R-1 peers) and GetChunks (downloads of chunks
    held elsewhere), so chunk data is not copied through protobuf messages."""

    def __init__(self, addr: str, max_message: int) -> None:
        self.channel = grpc.aio.insecure_channel(addr, options=channel_options(max_message))
        self.stub = pb_grpc.PeerChunksStub(self.channel)
        self.put_chunk = self.channel.unary_unary(
            PUT_CHUNK_METHOD, request_serializer=None, response_deserializer=pb.PutChunksReply.FromString
        )
        self.get_chunks = self.channel.unary_stream(
            GET_CHUNKS_METHOD, request_serializer=pb.ChunkIds.SerializeToString, response_deserializer=decode_chunk
        )


class GrpcChunkPeers:
    def __init__(self, resolve: Callable[[str], str | None], timeout_s: float, max_message: int) -> None:
        self._resolve = resolve
        self._timeout = timeout_s
        self._max_message = max_message
        self._channels: dict[str, _Channel] = {}

    def _channel(self, node_id: str) -> _Channel:
        addr = self._resolve(node_id)
        if not addr:
            raise PeerUnavailable(node_id, "no known address")
        entry = self._channels.get(addr)
        if entry is None:
            entry = self._channels[addr] = _Channel(addr, self._max_message)
        return entry

    def _stub(self, node_id: str) -> pb_grpc.PeerChunksStub:
        return self._channel(node_id).stub

    async def put(self, node_id: str, chunk_id: str, data: Buffer) -> None:
        try:
            await self._channel(node_id).put_chunk(encode_chunk(chunk_id, data), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, node_id, chunk_id) from exc

    async def get(self, node_id: str, chunk_id: str) -> memoryview:
        try:
            call = self._channel(node_id).get_chunks(pb.ChunkIds(ids=[chunk_id]), timeout=self._timeout)
            async for chunk in call:
                if isinstance(chunk, ChunkData) and chunk.chunk_id == chunk_id:
                    return chunk.data
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, node_id, chunk_id) from exc
        raise ChunkNotFound(chunk_id)

    async def has_many(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        try:
            reply = await self._stub(node_id).HasChunks(pb.ChunkIds(ids=list(chunk_ids)), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, node_id, "") from exc
        return set(reply.ids)

    async def delete(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        try:
            reply = await self._stub(node_id).DeleteChunks(pb.ChunkIds(ids=list(chunk_ids)), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, node_id, "") from exc
        return set(reply.ids)

    async def compare_digests(
        self, node_id: str, from_node: str, ring_digest: str, digests: Sequence[bytes]
    ) -> DigestAnswer:
        request = pb.DigestRequest(from_node=from_node, ring_digest=ring_digest, buckets=list(digests))
        try:
            reply = await self._stub(node_id).CompareDigests(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, node_id, "") from exc
        return DigestAnswer(reply.ring_mismatch, {b.bucket: list(b.ids) for b in reply.differing})

    async def stats(self, node_id: str, timeout_s: float) -> dict[str, Any]:
        try:
            reply = await self._stub(node_id).Stats(pb.StatsRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, node_id, "") from exc
        return {f.name: getattr(reply, f.name) for f in reply.DESCRIPTOR.fields if f.name != "node_id"}

    async def close(self) -> None:
        for entry in self._channels.values():
            await entry.channel.close(None)
        self._channels.clear()


def _translate(exc: grpc.aio.AioRpcError, node_id: str, chunk_id: str) -> DfsError:
    code = exc.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return ChunkNotFound(chunk_id)
    if code == grpc.StatusCode.DATA_LOSS:
        return ChunkCorrupt(chunk_id, f"peer {node_id[:8]}")
    return PeerUnavailable(node_id, f"{code.name}: {exc.details()}")
