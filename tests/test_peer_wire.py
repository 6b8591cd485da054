"""The hand-built and hand-parsed data messages are exactly what protobuf would build and parse."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack

from hypothesis import given, settings
from hypothesis import strategies as st

from client.streams import decode_download_reply, encode_upload_request, open_source
from peer.rpc import wire
from proto import dfs_pb2 as pb


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=80), st.binary(max_size=300))
def test_encode_chunk_matches_protobuf(chunk_id: str, data: bytes) -> None:
    raw = wire.encode_chunk(chunk_id, data)
    if chunk_id and data:  # proto3 leaves empty fields out; otherwise the bytes are identical
        assert raw == pb.Chunk(chunk_id=chunk_id, data=data).SerializeToString()
    parsed = pb.Chunk.FromString(raw)
    assert (parsed.chunk_id, parsed.data) == (chunk_id, data)


def test_encode_chunk_of_a_full_chunk() -> None:
    data = os.urandom(1024 * 1024)
    parsed = pb.Chunk.FromString(wire.encode_chunk("ab" * 32, data))
    assert parsed.chunk_id == "ab" * 32 and parsed.data == data


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=80), st.binary(max_size=300))
def test_decode_chunk_reads_what_protobuf_writes(chunk_id: str, data: bytes) -> None:
    for raw in (wire.encode_chunk(chunk_id, data), pb.Chunk(chunk_id=chunk_id, data=data).SerializeToString()):
        parsed = wire.decode_chunk(raw)
        assert isinstance(parsed, wire.ChunkData)
        assert (parsed.chunk_id, bytes(parsed.data)) == (chunk_id, data)


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=80), st.binary(min_size=1, max_size=300), st.integers(0, 2**64 - 1))
def test_a_chunk_with_its_transfer_checksum_round_trips(chunk_id: str, data: bytes, xxh3: int) -> None:
    raw = wire.encode_chunk(chunk_id, data, xxh3)
    parsed = pb.Chunk.FromString(raw)
    assert (parsed.chunk_id, parsed.data, parsed.xxh3) == (chunk_id, data, xxh3)
    for encoded in (raw, pb.Chunk(chunk_id=chunk_id, data=data, xxh3=xxh3).SerializeToString()):
        chunk = wire.decode_chunk(encoded)
        assert isinstance(chunk, wire.ChunkData)
        assert (chunk.chunk_id, bytes(chunk.data), chunk.xxh3) == (chunk_id, data, xxh3)
    assert wire.decode_chunk(wire.encode_chunk(chunk_id, data)) == wire.ChunkData(chunk_id, memoryview(data), None)


def test_decode_chunk_data_is_a_view_of_the_message() -> None:
    raw = wire.encode_chunk("ab" * 32, os.urandom(1024 * 1024))
    parsed = wire.decode_chunk(raw)
    assert isinstance(parsed, wire.ChunkData) and parsed.data.obj is raw


def test_decode_chunk_falls_back_to_protobuf_for_other_encodings() -> None:
    data_first = b"\x12\x03abc" + b"\x0a\x02id"  # fields in the other order
    assert wire.decode_chunk(data_first) == wire.ChunkData("id", memoryview(b"abc"))
    trailing = wire.encode_chunk("id", b"abc") + b"\x20\x07"  # an unknown field 4 after the data
    assert wire.decode_chunk(trailing) == wire.ChunkData("id", memoryview(b"abc"))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_decoders_never_raise(raw: bytes) -> None:
    for decode in (wire.decode_chunk, wire.decode_upload_request):
        result = decode(raw)
        assert isinstance(result, pb.UploadRequest | memoryview | wire.ChunkData | wire.Malformed)


def test_malformed_bytes_are_reported_not_raised() -> None:
    assert isinstance(wire.decode_chunk(b"\x12\x05ab"), wire.Malformed)  # length beyond the end
    assert isinstance(wire.decode_chunk(b"\x0a\x02\xff\xfe\x12\x01x"), wire.Malformed)  # id not UTF-8
    assert isinstance(wire.decode_upload_request(b"\x0a\x09\x0a"), wire.Malformed)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300))
def test_upload_data_round_trip(data: bytes) -> None:
    raw = encode_upload_request(data)
    assert pb.UploadRequest.FromString(raw) == pb.UploadRequest(data=data)
    parsed = wire.decode_upload_request(raw)
    assert isinstance(parsed, memoryview) and bytes(parsed) == data
    assert bytes(wire.decode_upload_request(pb.UploadRequest(data=data).SerializeToString())) == data  # type: ignore[arg-type]


def test_upload_header_goes_through_protobuf() -> None:
    header = pb.UploadRequest(header=pb.UploadHeader(name="a/b", metadata={"k": "v"}))
    raw = encode_upload_request(header)
    assert raw == header.SerializeToString()
    assert wire.decode_upload_request(raw) == header
    assert wire.decode_upload_request(b"") == pb.UploadRequest()  # an empty message: neither field


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300))
def test_download_data_round_trip(data: bytes) -> None:
    raw = wire.encode_download_reply(data)
    assert pb.DownloadReply.FromString(raw) == pb.DownloadReply(data=data)
    assert decode_download_reply(raw) == data
    assert decode_download_reply(pb.DownloadReply(data=data).SerializeToString()) in (data, pb.DownloadReply(data=data))


def test_download_header_goes_through_protobuf() -> None:
    reply = pb.DownloadReply(header=pb.DownloadHeader(offset=3, length=9))
    raw = wire.encode_download_reply(reply)
    assert raw == reply.SerializeToString() and decode_download_reply(raw) == reply
    big = os.urandom(1024 * 1024)
    assert decode_download_reply(wire.encode_download_reply(memoryview(big))) == big


def test_upload_pieces_are_cut_to_the_message_size_and_copied_only_when_they_must_be() -> None:
    """An iterable's `bytes` pieces that fit a message are sent as they are; larger pieces are cut;
    a buffer the caller refills after each piece is copied, so every message holds what was given."""
    fits, large = os.urandom(1000), os.urandom(2500)
    refilled = bytearray(b"a" * 700)

    def caller_pieces() -> Iterator[bytes | bytearray]:
        yield fits
        yield large
        yield refilled
        refilled[:] = b"b" * 700  # the caller reuses its buffer once the piece is taken
        yield refilled

    with ExitStack() as stack:
        pieces, name = open_source(caller_pieces(), "x", 1000, stack)
        sent = list(pieces)
    assert name == "x" and sent[0] is fits
    assert [len(p) for p in sent] == [1000, 1000, 1000, 500, 700, 700]
    assert b"".join(sent) == fits + large + b"a" * 700 + b"b" * 700
