"""The internal PeerChunks service: other peers put, get, probe and delete chunks here.

A put is acknowledged only after the chunk is durable on this disk, and only if its bytes hash to
its id (the sender is not trusted with that). A get re-verifies the copy it reads; a corrupt copy
is quarantined and simply not sent, so the caller moves on to another holder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from peer.errors import ChunkCorrupt, ChunkNotFound, DfsError, InvalidRequest
from peer.rpc.status import abort_with
from peer.storage.chunkstore import ChunkStore, check_chunk_id
from proto import dfs_pb2 as pb
from proto import dfs_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

MAX_IDS = 10_000


def _ids(msg: pb.ChunkIds) -> list[str]:
    if len(msg.ids) > MAX_IDS:
        raise InvalidRequest(f"at most {MAX_IDS} chunk ids per request")
    return [check_chunk_id(i) for i in msg.ids]


class PeerChunksServicer(pb_grpc.PeerChunksServicer):
    def __init__(self, store: ChunkStore) -> None:
        self._store = store

    async def PutChunks(  # noqa: N802 - gRPC method names
        self, request_iterator: AsyncIterator[pb.Chunk], context: grpc.aio.ServicerContext
    ) -> pb.PutChunksReply:
        stored: list[str] = []
        try:
            async for chunk in request_iterator:
                check_chunk_id(chunk.chunk_id)
                await asyncio.to_thread(self._store.put, chunk.chunk_id, chunk.data)
                stored.append(chunk.chunk_id)
        except DfsError as exc:
            await abort_with(context, exc)
        return pb.PutChunksReply(stored=stored)

    async def GetChunks(  # noqa: N802
        self, request: pb.ChunkIds, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Chunk]:
        try:
            ids = _ids(request)
        except DfsError as exc:
            await abort_with(context, exc)
        for chunk_id in ids:
            try:
                data = await asyncio.to_thread(self._store.get, chunk_id)
            except (ChunkNotFound, ChunkCorrupt):
                continue
            yield pb.Chunk(chunk_id=chunk_id, data=data)

    async def HasChunks(self, request: pb.ChunkIds, context: grpc.aio.ServicerContext) -> pb.ChunkIds:  # noqa: N802
        try:
            ids = _ids(request)
        except DfsError as exc:
            await abort_with(context, exc)
        present = await asyncio.to_thread(lambda: [i for i in ids if self._store.has(i)])
        return pb.ChunkIds(ids=present)

    async def DeleteChunks(  # noqa: N802
        self, request: pb.ChunkIds, context: grpc.aio.ServicerContext
    ) -> pb.ChunkIds:
        try:
            ids = _ids(request)
        except DfsError as exc:
            await abort_with(context, exc)
        deleted = await asyncio.to_thread(lambda: [i for i in ids if self._store.delete(i)])
        return pb.ChunkIds(ids=deleted)
