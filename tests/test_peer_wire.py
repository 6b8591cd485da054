"""The hand-built PutChunk message is exactly what protobuf would build and parse."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from peer.rpc.peer_client import encode_chunk
from proto import dfs_pb2 as pb


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=80), st.binary(max_size=300))
def test_encode_chunk_matches_protobuf(chunk_id: str, data: bytes) -> None:
    wire = encode_chunk(chunk_id, data)
    if chunk_id and data:  # proto3 leaves empty fields out; otherwise the bytes are identical
        assert wire == pb.Chunk(chunk_id=chunk_id, data=data).SerializeToString()
    parsed = pb.Chunk.FromString(wire)
    assert (parsed.chunk_id, parsed.data) == (chunk_id, data)


def test_encode_chunk_of_a_full_chunk() -> None:
    data = os.urandom(1024 * 1024)
    parsed = pb.Chunk.FromString(encode_chunk("ab" * 32, data))
    assert parsed.chunk_id == "ab" * 32 and parsed.data == data
