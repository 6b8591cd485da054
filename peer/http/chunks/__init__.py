"""Chunk streams: how peers move chunk bodies between each other (replica writes, reads from holders,
repair, handoff and rebalance), on the HTTP listener, past gRPC.

An HTTP/1.1 upgrade (upgrade.py) opens a connection that then carries fixed-header frames
(frames.py), read straight into the buffers chunks are stored from (stream.py). The serving side is
serve.py, the requesting side dial.py and client.py (`StreamChunkPeers`, the peer's ChunkPeers).
"""

from peer.http.chunks.client import StreamChunkPeers
from peer.http.chunks.serve import ChunkServing, chunks_app

__all__ = ["ChunkServing", "StreamChunkPeers", "chunks_app"]
