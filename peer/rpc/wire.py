"""Hand-built and hand-parsed protobuf wire format for the messages that carry chunk data.

Every uploaded byte crosses gRPC up to three times and every downloaded byte once more; letting
protobuf build and parse those messages copies each 1 MiB piece twice more on each side (message
object, serialization, `.data` access), which profiles of large transfers showed as a quarter of a
peer's time. The data messages here have one shape each (a bytes field, optionally after a chunk id),
so the common encoding is written and read directly: one copy to send, none to receive (the data is
a memoryview of the received message). Anything else falls back to protobuf, which accepts every
valid encoding; bytes that protobuf cannot parse either become `Malformed`, which the handler turns
into INVALID_ARGUMENT (a deserializer that raised would end the call as UNKNOWN).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from proto import dfs_pb2 as pb

_CHUNK_ID_TAG = 0x0A  # field 1, length-delimited
_DATA_TAG = 0x12  # field 2, length-delimited
_XXH3_TAG = 0x19  # field 3, 64-bit

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes are not a valid message of the expected type."""

    what: str


@dataclass(frozen=True)
class ChunkData:
    """A parsed `Chunk`: the id, a view of the data inside the received message, and the sender's
    XXH3-64 of the data when it sent one."""

    chunk_id: str
    data: memoryview
    xxh3: int | None = None


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it); (-1, pos) when the varint is cut short or longer than 10 bytes."""
    value = shift = 0
    end = min(len(raw), pos + 10)
    while pos < end:
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return -1, pos


def _data_field(raw: bytes, pos: int) -> memoryview | None:
    """A view of the field-2 bytes starting at `pos` when they are exactly the rest of `raw`."""
    if pos >= len(raw) or raw[pos] != _DATA_TAG:
        return None
    length, start = _read_varint(raw, pos + 1)
    if length < 0 or start + length != len(raw):
        return None
    return memoryview(raw)[start:]


def encode_data(data: Buffer) -> bytes:
    """A message whose only field is `bytes data = 2` (UploadRequest and DownloadReply data), one copy."""
    return b"".join((bytes((_DATA_TAG,)), varint(len(data)), data))


def encode_chunk(chunk_id: str, data: Buffer, xxh3: int | None = None) -> bytes:
    """A `Chunk` message (chunk_id = 1, the optional xxh3 = 3, data = 2), built with one copy of the data."""
    key = chunk_id.encode()
    check = b"" if xxh3 is None else bytes((_XXH3_TAG,)) + xxh3.to_bytes(8, "little")
    head = (bytes((_CHUNK_ID_TAG,)), varint(len(key)), key, check, bytes((_DATA_TAG,)), varint(len(data)))
    return b"".join((*head, data))


def encode_chunk_data(chunk: ChunkData) -> bytes:
    return encode_chunk(chunk.chunk_id, chunk.data, chunk.xxh3)


def decode_upload_request(raw: bytes) -> pb.UploadRequest | memoryview | Malformed:
    """Data messages become a view of their bytes; the header (or any other encoding) a protobuf message."""
    view = _data_field(raw, 0)
    if view is not None:
        return view
    try:
        msg = pb.UploadRequest.FromString(raw)
    except DecodeError:
        return Malformed("UploadRequest")
    if msg.WhichOneof("msg") == "data":
        return memoryview(msg.data)
    return msg


def decode_chunk(raw: bytes) -> ChunkData | Malformed:
    if len(raw) > 2 and raw[0] == _CHUNK_ID_TAG:
        length, start = _read_varint(raw, 1)
        if 0 <= length <= 256 and start + length <= len(raw):
            pos, xxh3 = start + length, None
            if pos + 9 <= len(raw) and raw[pos] == _XXH3_TAG:
                xxh3, pos = int.from_bytes(raw[pos + 1 : pos + 9], "little"), pos + 9
            view = _data_field(raw, pos)
            if view is not None:
                try:
                    return ChunkData(raw[start : start + length].decode(), view, xxh3)
                except UnicodeDecodeError:
                    return Malformed("Chunk")
    try:
        msg = pb.Chunk.FromString(raw)
    except DecodeError:
        return Malformed("Chunk")
    return ChunkData(msg.chunk_id, memoryview(msg.data), msg.xxh3 if msg.HasField("xxh3") else None)


def encode_download_reply(reply: pb.DownloadReply | Buffer) -> bytes:
    """The Download response serializer: a header message, or a data piece sent as its bytes."""
    if isinstance(reply, pb.DownloadReply):
        return reply.SerializeToString()
    return encode_data(reply)


class HandlerRecorder:
    """Stands in for a server to capture a service's generated method handlers, so a caller can swap
    the (de)serializers of its data methods and register the rest unchanged."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, _handlers: object) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.service, self.handlers = service, dict(handlers)

    def register(self, server: grpc.aio.Server, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(self.service, handlers),))
        server.add_registered_method_handlers(self.service, handlers)  # type: ignore[attr-defined]
