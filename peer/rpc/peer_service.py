"""The internal PeerChunks service: other peers put, get, probe and delete chunks here.

A put is acknowledged only after the chunk is durable on this disk, and only if its bytes are the
ones the sender checked: against the XXH3-64 the sender sent along when it hashed the chunk itself
(an uploading peer has), otherwise against the id, by SHA-256 (see ChunkStore.put). A get
re-verifies the copy it reads (a corrupt copy is quarantined and simply not sent, so the caller
moves on to another holder) and sends its XXH3-64 along, which the caller checks the bytes that
arrive against instead of hashing them again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

from peer.errors import ChunkCorrupt, ChunkNotFound, DfsError, InvalidRequest
from peer.repair.index import BUCKETS
from peer.rpc import wire
from peer.rpc.status import maps_errors
from peer.storage.chunkstore import ChunkStore, check_chunk_id, xxh3_64
from proto import dfs_pb2 as pb
from proto import dfs_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

MAX_IDS = 10_000
STREAM_WRITES = 4  # chunks of one PutChunkStream being written at once; more wait in gRPC's flow control


def _ids(msg: pb.ChunkIds) -> list[str]:
    if len(msg.ids) > MAX_IDS:
        raise InvalidRequest(f"at most {MAX_IDS} chunk ids per request")
    return [check_chunk_id(i) for i in msg.ids]


DigestAnswerer = Callable[[str, str, Sequence[bytes]], Awaitable[tuple[bool, dict[int, list[str]]]]]


class PeerChunksServicer(pb_grpc.PeerChunksServicer):
    def __init__(self, store: ChunkStore, answer_digests: DigestAnswerer, stats: Callable[[], dict[str, Any]],
                 node_id: str, *, trust_checksums: bool = True,
                 moved: Callable[[str, int], None] = lambda _direction, _nbytes: None) -> None:
        """`trust_checksums`: let a sender's XXH3-64 stand for the SHA-256 check. False where calls are
        signed with the cluster secret over plain HTTP/2: the HMAC covers the call, not the body, and
        bytes can be crafted to match an XXH3-64, so bodies are then checked against their id."""
        self._store = store
        self._trust = trust_checksums
        self._moved = moved  # each chunk stored ("received") or sent ("sent") with its size, for the metrics
        self._answer_digests = answer_digests
        self._stats = stats
        self._node_id = node_id

    @maps_errors
    async def PutChunk(  # noqa: N802 - gRPC method names
        self, request: wire.ChunkData | wire.Malformed, context: grpc.aio.ServicerContext
    ) -> pb.PutChunksReply:
        """`add_to_server` registers `wire.decode_chunk` as this method's deserializer: the data is a
        view of the received message, hashed and written without another copy."""
        if isinstance(request, wire.Malformed):
            raise InvalidRequest("the request could not be parsed as a Chunk")
        check_chunk_id(request.chunk_id)
        await asyncio.to_thread(self._store.put, request.chunk_id, request.data, False,
                                request.xxh3 if self._trust else None)
        self._moved("received", len(request.data))
        return pb.PutChunksReply(stored=[request.chunk_id])

    @maps_errors
    async def PutChunkStream(  # noqa: N802
        self, request_iterator: AsyncIterator[wire.ChunkData | wire.Malformed], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.PutChunksReply]:
        """Writes up to STREAM_WRITES chunks of the stream at once and acknowledges each once durable;
        the first chunk that cannot be stored ends the stream with its error."""
        acks: asyncio.Queue[str | DfsError | None] = asyncio.Queue()
        receiver = asyncio.create_task(self._store_stream(request_iterator, acks))
        try:
            while (ack := await acks.get()) is not None:
                if isinstance(ack, DfsError):
                    raise ack
                yield pb.PutChunksReply(stored=[ack])
            await receiver
        finally:
            receiver.cancel()

    async def _store_stream(
        self, requests: AsyncIterator[wire.ChunkData | wire.Malformed], acks: asyncio.Queue[str | DfsError | None]
    ) -> None:
        slots = asyncio.Semaphore(STREAM_WRITES)

        async def store(chunk: wire.ChunkData) -> None:
            try:
                await asyncio.to_thread(self._store.put, chunk.chunk_id, chunk.data, False,
                                        chunk.xxh3 if self._trust else None)
                self._moved("received", len(chunk.data))
                acks.put_nowait(chunk.chunk_id)
            except DfsError as exc:
                acks.put_nowait(exc)
            finally:
                slots.release()

        try:
            async with asyncio.TaskGroup() as group:
                async for chunk in requests:
                    try:
                        if isinstance(chunk, wire.Malformed):
                            raise InvalidRequest("a message could not be parsed as a Chunk")
                        check_chunk_id(chunk.chunk_id)
                    except DfsError as exc:
                        acks.put_nowait(exc)
                        break
                    await slots.acquire()
                    group.create_task(store(chunk))
        finally:
            acks.put_nowait(None)

    @maps_errors
    async def GetChunks(  # noqa: N802
        self, request: pb.ChunkIds, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[wire.ChunkData]:
        """Streams the requested chunks this peer holds, each verified against its id on the way
        out; a missing or corrupt one (quarantined by the read) is skipped, and the caller, who
        sees which ids came back, asks another holder for it."""
        for chunk_id in _ids(request):
            try:
                data, xxh3 = await asyncio.to_thread(self._read_for_sending, chunk_id)
            except (ChunkNotFound, ChunkCorrupt):
                continue
            yield wire.ChunkData(chunk_id, memoryview(data), xxh3)  # framed by wire.encode_chunk_data
            self._moved("sent", len(data))

    def _read_for_sending(self, chunk_id: str) -> tuple[bytes, int]:
        data = self._store.get(chunk_id)  # verified against its id
        return data, xxh3_64(data)

    @maps_errors
    async def HasChunks(self, request: pb.ChunkIds, context: grpc.aio.ServicerContext) -> pb.ChunkIds:  # noqa: N802
        ids = _ids(request)
        present = await asyncio.to_thread(lambda: [i for i in ids if self._store.has(i)])
        return pb.ChunkIds(ids=present)

    @maps_errors
    async def DeleteChunks(  # noqa: N802
        self, request: pb.ChunkIds, context: grpc.aio.ServicerContext
    ) -> pb.ChunkIds:
        ids = _ids(request)
        deleted = await asyncio.to_thread(lambda: [i for i in ids if self._store.delete(i)])
        return pb.ChunkIds(ids=deleted)

    @maps_errors
    async def CompareDigests(  # noqa: N802
        self, request: pb.DigestRequest, context: grpc.aio.ServicerContext
    ) -> pb.DigestReply:
        if len(request.buckets) != BUCKETS or any(len(b) > 16 for b in request.buckets):
            raise InvalidRequest(f"expected {BUCKETS} bucket digests of at most 16 bytes")
        mismatch, differing = await self._answer_digests(request.from_node, request.ring_digest, request.buckets)
        return pb.DigestReply(
            ring_mismatch=mismatch,
            differing=[pb.BucketIds(bucket=b, ids=ids) for b, ids in sorted(differing.items())],
        )

    @maps_errors
    async def Stats(self, request: pb.StatsRequest, context: grpc.aio.ServicerContext) -> pb.PeerStats:  # noqa: N802
        return pb.PeerStats(node_id=self._node_id, **self._stats())


def add_to_server(servicer: PeerChunksServicer, server: grpc.aio.Server) -> None:
    """Registers the PeerChunks service: the generated handlers, except that PutChunk and
    PutChunkStream requests and GetChunks replies go through `wire` (no protobuf copies of chunk data)."""
    recorder = wire.HandlerRecorder()
    pb_grpc.add_PeerChunksServicer_to_server(servicer, recorder)
    handlers = dict(recorder.handlers)
    handlers["PutChunk"] = grpc.unary_unary_rpc_method_handler(
        servicer.PutChunk,
        request_deserializer=wire.decode_chunk,
        response_serializer=pb.PutChunksReply.SerializeToString,
    )
    handlers["PutChunkStream"] = grpc.stream_stream_rpc_method_handler(
        servicer.PutChunkStream,
        request_deserializer=wire.decode_chunk,
        response_serializer=pb.PutChunksReply.SerializeToString,
    )
    handlers["GetChunks"] = grpc.unary_stream_rpc_method_handler(
        servicer.GetChunks,
        request_deserializer=pb.ChunkIds.FromString,
        response_serializer=wire.encode_chunk_data,
    )
    recorder.register(server, handlers)
