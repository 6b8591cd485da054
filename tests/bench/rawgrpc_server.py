"""A storage-free gRPC server for the transport baseline, run by `hop_server grpc` in a process of its own
(so client and server use separate cores, as with a real peer, and with the peer's allocator settings).

Same server flavour (grpc.aio), same server options (`server_options` with the peer's maximum message
size) and the same wire messages as a peer, but nothing is stored: `Sink` drops every UploadRequest
and `Source` streams DownloadReply messages of 1 MiB until `length` bytes have been sent.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import grpc

from peer.config import MIB
from peer.rpc.peer_client import server_options
from proto import dfs_pb2 as pb

SINK = "/dfsbench.Raw/Sink"
SOURCE = "/dfsbench.Raw/Source"
PIECE = MIB

# What Node.run gives its grpc.aio server for the default 1 MiB chunk size.
PEER_MAX_MESSAGE = max(PIECE + MIB, 8 * MIB)


Context = grpc.aio.ServicerContext[Any, Any]


async def _sink(requests: AsyncIterator[pb.UploadRequest], context: Context) -> pb.UploadReply:
    received = 0
    async for msg in requests:
        received += len(msg.data)
    return pb.UploadReply(version=pb.VersionInfo(size=received))


async def _source(request: pb.DownloadRequest, context: Context) -> AsyncIterator[pb.DownloadReply]:
    data = os.urandom(PIECE)
    left = request.length
    while left > 0:
        n = min(PIECE, left)
        yield pb.DownloadReply(data=data if n == PIECE else data[:n])
        left -= n


def new_server() -> grpc.aio.Server:
    """A grpc.aio server with the peer's options, serving Sink and Source (not yet bound or started)."""
    server = grpc.aio.server(options=server_options(PEER_MAX_MESSAGE))
    handler = grpc.method_handlers_generic_handler("dfsbench.Raw", {
        "Sink": grpc.stream_unary_rpc_method_handler(
            _sink, request_deserializer=pb.UploadRequest.FromString,
            response_serializer=pb.UploadReply.SerializeToString),
        "Source": grpc.unary_stream_rpc_method_handler(
            _source, request_deserializer=pb.DownloadRequest.FromString,
            response_serializer=pb.DownloadReply.SerializeToString),
    })
    server.add_generic_rpc_handlers((handler,))
    return server

