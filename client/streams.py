"""The two streaming halves of the SDK: the request feed of an upload and the reply stream of a download.

Both hash the bytes as they pass, so neither ever holds a whole file in memory, and both verify what
the peer claims against what actually crossed the wire: a mismatch is an IntegrityError, never silence.

Data messages skip protobuf's message objects: an upload piece is framed straight into its wire bytes
(`encode_upload_request`) and a download piece is cut straight out of them (`decode_download_reply`),
one copy each instead of three; headers, and any encoding other than the plain one, go through protobuf.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import grpc

from client.errors import IntegrityError, InvalidArgument, ServerError, from_rpc_error
from client.models import VersionInfo, version_from_proto
from proto import dfs_pb2

UploadSource = str | Path | bytes | BinaryIO | Iterable[bytes]
"""A local path, the bytes themselves, a binary file object, or any iterable of byte pieces."""

Progress = Callable[[int], None]
"""Called with the number of bytes just sent or received."""


def open_source(
    source: UploadSource, name: str | None, piece_size: int, stack: ExitStack
) -> tuple[Iterator[bytes], str]:
    """The pieces to send and the file name; a path is opened here so a missing file fails before any RPC."""
    if isinstance(source, str | Path):
        path = Path(source)
        handle = stack.enter_context(path.open("rb"))
        return _read_pieces(handle, piece_size), name or path.name
    if not name:
        raise InvalidArgument("a name is required when uploading from a stream")
    if isinstance(source, bytes | bytearray | memoryview):
        return _read_pieces(io.BytesIO(source), piece_size), name
    if hasattr(source, "read"):
        return _read_pieces(source, piece_size), name  # type: ignore[arg-type]
    return _split_pieces(source, piece_size), name


_DATA_TAG = b"\x12"  # field 2 (`bytes data`) of UploadRequest and DownloadReply, length-delimited


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_upload_request(item: dfs_pb2.UploadRequest | bytes) -> bytes:
    """Request serializer of Upload: the header message, or a data piece given as its bytes."""
    if isinstance(item, dfs_pb2.UploadRequest):
        return item.SerializeToString()
    return b"".join((_DATA_TAG, _varint(len(item)), item))


def decode_download_reply(raw: bytes) -> dfs_pb2.DownloadReply | bytes:
    """Response deserializer of Download: a data message becomes its bytes, anything else a message."""
    if raw[:1] == _DATA_TAG:
        length = shift = 0
        for pos in range(1, min(len(raw), 11)):
            byte = raw[pos]
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                if pos + 1 + length == len(raw):
                    return raw[pos + 1 :]
                break
    return dfs_pb2.DownloadReply.FromString(raw)


def _read_pieces(handle: BinaryIO, piece_size: int) -> Iterator[bytes]:
    while piece := handle.read(piece_size):
        yield piece


def _split_pieces(pieces: Iterable[bytes], piece_size: int) -> Iterator[bytes]:
    """Re-cuts caller pieces so none exceeds the message size the channel allows."""
    for piece in pieces:
        view = memoryview(piece)
        for start in range(0, len(view), piece_size):
            yield bytes(view[start : start + piece_size])


class UploadFeed:
    """Request iterator of one Upload call: the header, then the data pieces, hashed as they leave.

    grpc consumes it on its own thread and turns any exception into a cancelled call, which the peer
    discards; the original exception is kept in `error` so the caller can re-raise it instead of a
    meaningless CANCELLED.
    """

    def __init__(
        self, header: dfs_pb2.UploadHeader, pieces: Iterator[bytes], progress: Progress | None
    ) -> None:
        self._header = header
        self._pieces = pieces
        self._progress = progress
        self._hash = hashlib.sha256()
        self.sent = 0
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[dfs_pb2.UploadRequest | bytes]:
        """The header message, then the data pieces as bytes (framed by `encode_upload_request`)."""
        yield dfs_pb2.UploadRequest(header=self._header)
        try:
            for piece in self._pieces:
                if not piece:
                    continue
                self._hash.update(piece)
                self.sent += len(piece)
                yield bytes(piece)
                if self._progress is not None:
                    self._progress(len(piece))
        except Exception as exc:
            self.error = exc
            raise
        # Proof that the stream is complete: a peer commits nothing that ends without it.
        yield dfs_pb2.UploadRequest(trailer=dfs_pb2.UploadTrailer(size=self.sent, sha256=self._hash.hexdigest()))

    def verify(self, stored: VersionInfo) -> None:
        """Raises IntegrityError unless the peer stored exactly the bytes this client sent."""
        verify_stored(stored, self._hash.hexdigest(), self.sent)


def verify_stored(stored: VersionInfo, sha256: str, size: int) -> None:
    """Raises IntegrityError unless the version the peer stored has the SHA-256 and size sent."""
    if stored.sha256 != sha256:
        raise IntegrityError(
            f"{stored.name} version {stored.version}: the peer stored sha256 {stored.sha256 or '(none)'}"
            f" but this client sent {sha256}"
        )
    if stored.size != size:
        raise IntegrityError(
            f"{stored.name} version {stored.version}: the peer stored {stored.size} bytes"
            f" but this client sent {size}"
        )


class DownloadStream:
    """An open Download call whose header has arrived: iterate it once for the data pieces.

    Iteration ends by verifying the byte count and, when the whole file was requested, its SHA-256; so
    the last bytes a caller receives are only trustworthy once the loop has finished without error.
    Use it as a context manager (or call close()) so an abandoned download is cancelled on the peer.
    """

    def __init__(self, call: Any, header: dfs_pb2.DownloadHeader, peer: str) -> None:
        self.info: VersionInfo = version_from_proto(header.version)
        self.offset: int = header.offset
        self.length: int = header.length
        """Bytes the peer announced for this range."""
        self.received = 0
        self._call = call
        self._peer = peer
        self._hash = hashlib.sha256() if self.is_whole_file else None

    @property
    def is_whole_file(self) -> bool:
        return self.offset == 0 and self.length == self.info.size

    def __iter__(self) -> Iterator[bytes]:
        try:
            for reply in self._call:
                yield self._accept(reply)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, peer=self._peer) from exc
        self._verify()

    def _accept(self, reply: dfs_pb2.DownloadReply | bytes) -> bytes:
        if isinstance(reply, bytes):
            data = reply
        elif reply.WhichOneof("msg") == "data":
            data = reply.data
        else:
            raise ServerError("the peer sent a second download header")
        self.received += len(data)
        if self.received > self.length:
            raise IntegrityError(
                f"{self.info.name}: the peer sent more than the {self.length} bytes it announced"
            )
        if self._hash is not None:
            self._hash.update(data)
        return data

    def _verify(self) -> None:
        if self.received != self.length:
            raise IntegrityError(
                f"{self.info.name}: received {self.received} of the {self.length} bytes the peer announced"
            )
        if self._hash is not None and self._hash.hexdigest() != self.info.sha256:
            raise IntegrityError(
                f"{self.info.name} version {self.info.version}: received data has sha256"
                f" {self._hash.hexdigest()}, expected {self.info.sha256}"
            )

    def close(self) -> None:
        """Cancels the call if data is still flowing; harmless after a complete download."""
        self._call.cancel()

    def __enter__(self) -> DownloadStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
