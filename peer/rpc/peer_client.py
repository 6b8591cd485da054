"""ChunkPeers over gRPC: how this peer reaches the PeerChunks service of the others.

One channel per peer address, reused by every call. gRPC failures are translated here, once, into
domain errors (PeerUnavailable, ChunkNotFound, ChunkCorrupt) so services never see grpc types.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from peer.errors import ChunkCorrupt, ChunkNotFound, DfsError, PeerUnavailable
from peer.rpc.auth import PEER_AUTH_KEY, PEERCHUNKS, peer_payload
from peer.rpc.tls import PEER_CHANNEL_OPTIONS, TlsFiles
from peer.rpc.wire import Buffer, ChunkData, decode_chunk, encode_chunk
from peer.security.peerauth import PeerSigner
from peer.transfer.peers import DigestAnswer, FetchedChunk
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


PUT_CHUNK_METHOD = f"{PEERCHUNKS}PutChunk"
PUT_CHUNK_STREAM_METHOD = f"{PEERCHUNKS}PutChunkStream"
GET_CHUNKS_METHOD = f"{PEERCHUNKS}GetChunks"


class _Channel:
    """One channel to a peer with its stub, plus the chunk-data calls framed by `wire`: PutChunkStream
    (the replication hot path sends every uploaded byte to R-1 peers), PutChunk and GetChunks, so
    chunk data is not copied through protobuf messages."""

    def __init__(self, addr: str, max_message: int, tls: TlsFiles | None) -> None:
        if tls is None:
            self.channel = grpc.aio.insecure_channel(addr, options=channel_options(max_message))
        else:
            self.channel = grpc.aio.secure_channel(addr, tls.peer_channel_credentials(),
                                                   options=[*channel_options(max_message), *PEER_CHANNEL_OPTIONS])
        self.stub = pb_grpc.PeerChunksStub(self.channel)
        self.put_chunk = self.channel.unary_unary(
            PUT_CHUNK_METHOD, request_serializer=None, response_deserializer=pb.PutChunksReply.FromString
        )
        self.put_chunk_stream = self.channel.stream_stream(
            PUT_CHUNK_STREAM_METHOD, request_serializer=None, response_deserializer=pb.PutChunksReply.FromString
        )
        self.get_chunks = self.channel.unary_stream(
            GET_CHUNKS_METHOD, request_serializer=pb.ChunkIds.SerializeToString, response_deserializer=decode_chunk
        )


class GrpcChunkPeers:
    def __init__(
        self,
        resolve: Callable[[str], str | None],
        timeout_s: float,
        max_message: int,
        *,
        tls: TlsFiles | None = None,
        signer: PeerSigner | None = None,
    ) -> None:
        """`resolve` maps a node id to its internal gRPC address. With `tls` every channel is mutual
        TLS; otherwise, with `signer`, every call carries a peer credential."""
        self._resolve = resolve
        self._timeout = timeout_s
        self._max_message = max_message
        self._tls = tls
        self._signer = signer
        self._channels: dict[str, _Channel] = {}
        self._unary_only: set[str] = set()  # addresses of peers without PutChunkStream (older versions)

    def _auth(self, method: str, request: Any) -> tuple[tuple[str, str], ...] | None:
        if self._signer is None:
            return None
        full = f"{PEERCHUNKS}{method}"
        return ((PEER_AUTH_KEY, self._signer.sign(full, peer_payload(full, request))),)

    def _channel(self, node_id: str) -> _Channel:
        addr = self._resolve(node_id)
        if not addr:
            raise PeerUnavailable(node_id, "no known address")
        entry = self._channels.get(addr)
        if entry is None:
            entry = self._channels[addr] = _Channel(addr, self._max_message, self._tls)
        return entry

    def _stub(self, node_id: str) -> pb_grpc.PeerChunksStub:
        return self._channel(node_id).stub

    async def put(self, node_id: str, chunk_id: str, data: Buffer, xxh3: int | None = None) -> None:
        try:
            await self._channel(node_id).put_chunk(
                encode_chunk(chunk_id, data, xxh3), timeout=self._timeout,
                metadata=self._auth("PutChunk", pb.Chunk(chunk_id=chunk_id)),
            )
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, node_id, chunk_id) from exc

    def writer(self) -> StreamWriter:
        return StreamWriter(self)

    async def get(self, node_id: str, chunk_id: str) -> FetchedChunk:
        try:
            request = pb.ChunkIds(ids=[chunk_id])
            call = self._channel(node_id).get_chunks(request, timeout=self._timeout,
                                                     metadata=self._auth("GetChunks", request))
            async for chunk in call:
                if isinstance(chunk, ChunkData) and chunk.chunk_id == chunk_id:
                    # Signed calls over plain HTTP/2 do not authenticate bodies: check them by SHA-256.
                    return FetchedChunk(chunk.data, chunk.xxh3 if self._signer is None else None)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, node_id, chunk_id) from exc
        raise ChunkNotFound(chunk_id)

    async def has_many(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        try:
            request = pb.ChunkIds(ids=list(chunk_ids))
            reply = await self._stub(node_id).HasChunks(request, timeout=self._timeout,
                                                        metadata=self._auth("HasChunks", request))
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, node_id, "") from exc
        return set(reply.ids)

    async def delete(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        try:
            request = pb.ChunkIds(ids=list(chunk_ids))
            reply = await self._stub(node_id).DeleteChunks(request, timeout=self._timeout,
                                                           metadata=self._auth("DeleteChunks", request))
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, node_id, "") from exc
        return set(reply.ids)

    async def compare_digests(
        self, node_id: str, from_node: str, ring_digest: str, digests: Sequence[bytes]
    ) -> DigestAnswer:
        request = pb.DigestRequest(from_node=from_node, ring_digest=ring_digest, buckets=list(digests))
        try:
            reply = await self._stub(node_id).CompareDigests(request, timeout=self._timeout,
                                                             metadata=self._auth("CompareDigests", request))
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, node_id, "") from exc
        return DigestAnswer(reply.ring_mismatch, {b.bucket: list(b.ids) for b in reply.differing})

    async def stats(self, node_id: str, timeout_s: float) -> dict[str, Any]:
        try:
            request = pb.StatsRequest()
            reply = await self._stub(node_id).Stats(request, timeout=timeout_s, metadata=self._auth("Stats", request))
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, node_id, "") from exc
        return {f.name: getattr(reply, f.name) for f in reply.DESCRIPTOR.fields if f.name != "node_id"}

    async def close(self) -> None:
        for entry in self._channels.values():
            await entry.channel.close(None)
        self._channels.clear()


class _PutStream:
    """One PutChunkStream call to one peer: chunks are written in order, one at a time, and each
    put waits for the acknowledgement carrying its id (they may come out of order). When the call
    ends early every put still waiting fails with the call's error, translated."""

    def __init__(self, channel: _Channel, node_id: str, metadata: tuple[tuple[str, str], ...] | None) -> None:
        self.node_id = node_id
        self.call = channel.put_chunk_stream(metadata=metadata)  # type: ignore[call-arg]  # requests go by write()
        self.unimplemented = False
        self._failure: DfsError | None = None
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self._send = asyncio.Lock()
        self._acks = asyncio.create_task(self._read_acks())

    @property
    def failed(self) -> bool:
        return self._failure is not None

    async def put(self, chunk_id: str, data: Buffer, xxh3: int | None, timeout_s: float) -> None:
        if self._failure is not None:
            raise self._failure
        acked = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(chunk_id, deque()).append(acked)
        try:
            async with asyncio.timeout(timeout_s):
                async with self._send:
                    await self.call.write(encode_chunk(chunk_id, data, xxh3))
                await acked
        except TimeoutError:
            self.abort(PeerUnavailable(self.node_id, f"chunk {chunk_id[:12]} not acknowledged within {timeout_s} s"))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            await asyncio.wait([self._acks], timeout=1.0)  # the call's own status says more than the write
            self.abort(PeerUnavailable(self.node_id, f"chunk stream: {exc}"))
        if not acked.done() or acked.cancelled() or acked.exception() is not None:
            raise self._failure or PeerUnavailable(self.node_id, "chunk stream failed")

    async def _read_acks(self) -> None:
        error: DfsError = PeerUnavailable(self.node_id, "the chunk stream ended early")
        try:
            async for reply in self.call:
                for chunk_id in reply.stored:
                    self._ack(chunk_id)
        except grpc.aio.AioRpcError as exc:
            self.unimplemented = exc.code() == grpc.StatusCode.UNIMPLEMENTED
            error = _translate(exc, self.node_id, "")
        self.abort(error)

    def _ack(self, chunk_id: str) -> None:
        waiting = self._waiting.get(chunk_id)
        if not waiting:
            return
        acked = waiting.popleft()
        if not waiting:
            del self._waiting[chunk_id]
        if not acked.done():
            acked.set_result(None)

    def abort(self, error: DfsError) -> None:
        """Fails every put still waiting and ends the call (a no-op once the stream has failed)."""
        if self._failure is not None:
            return
        self._failure = error
        for waiting in self._waiting.values():
            for acked in waiting:
                if not acked.done():
                    acked.set_exception(error)
        self._waiting.clear()
        self.call.cancel()

    async def close(self, timeout_s: float) -> None:
        """Ends the request stream and waits for the peer to end the call."""
        if self._failure is None:
            try:
                async with self._send:
                    await self.call.done_writing()
                await asyncio.wait_for(asyncio.shield(self._acks), timeout_s)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError, TimeoutError):
                pass
        self.abort(PeerUnavailable(self.node_id, "the chunk stream was closed"))
        self._acks.cancel()


UNARY_PUTS = 2  # chunks of one upload sent to a peer as unary calls before a stream is opened to it


class StreamWriter:
    """The puts of one upload: one long-lived PutChunkStream per target peer, replaced if it fails,
    instead of one unary call per chunk. A stream costs more than a unary call to set up and less
    per chunk, so the first UNARY_PUTS chunks to each peer (all of a small upload's) go as unary
    PutChunk calls. A peer that does not know the method gets unary calls only."""

    def __init__(self, peers: GrpcChunkPeers) -> None:
        self._peers = peers
        self._streams: dict[str, _PutStream] = {}
        self._puts: dict[str, int] = {}

    async def put(self, node_id: str, chunk_id: str, data: Buffer, xxh3: int | None = None) -> None:
        peers = self._peers
        channel = peers._channel(node_id)
        addr = peers._resolve(node_id) or ""
        self._puts[node_id] = sent = self._puts.get(node_id, 0) + 1
        if sent <= UNARY_PUTS or addr in peers._unary_only:
            return await peers.put(node_id, chunk_id, data, xxh3)
        stream = self._streams.get(node_id)
        if stream is None or stream.failed:
            stream = self._streams[node_id] = _PutStream(channel, node_id, peers._auth("PutChunkStream", None))
        try:
            await stream.put(chunk_id, data, xxh3, peers._timeout)
        except DfsError:
            if not stream.unimplemented:
                raise
            peers._unary_only.add(addr)
            await peers.put(node_id, chunk_id, data, xxh3)

    async def close(self) -> None:
        streams, self._streams = list(self._streams.values()), {}
        await asyncio.gather(*(s.close(self._peers._timeout) for s in streams))

    def abort(self) -> None:
        streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            stream.abort(PeerUnavailable(stream.node_id, "the upload ended"))


def _translate(exc: grpc.aio.AioRpcError, node_id: str, chunk_id: str) -> DfsError:
    code = exc.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return ChunkNotFound(chunk_id)
    if code == grpc.StatusCode.DATA_LOSS:
        return ChunkCorrupt(chunk_id, f"peer {node_id[:8]}")
    return PeerUnavailable(node_id, f"{code.name}: {exc.details()}")
