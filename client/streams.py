"""The two streaming halves of the SDK: the request feed of an upload and the reply stream of a download.

Both hash the bytes as they pass, so neither ever holds a whole file in memory (a download holds at
most one chunk), and both verify what the peer claims against what actually crossed the wire: a
mismatch is an IntegrityError, never silence.

Data messages skip protobuf's message objects: an upload piece is framed straight into its wire bytes
(`encode_upload_request`) and a download piece is cut straight out of them (`decode_download_reply`),
one copy each instead of three; headers, and any encoding other than the plain one, go through protobuf.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import grpc

from client.errors import IntegrityError, InvalidArgument, ServerError, from_rpc_error
from client.models import VersionInfo, version_from_proto
from proto import dfs_pb2

UploadSource = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]
"""A local path, the bytes themselves, a binary file object, or any iterable of byte pieces."""

DownloadDest = str | os.PathLike[str] | BinaryIO
"""Where a download is written: a local path (replaced atomically) or a binary file object."""

Progress = Callable[[int], None]
"""Called with the number of bytes just sent or received."""


def open_source(
    source: UploadSource, name: str | None, piece_size: int, stack: ExitStack
) -> tuple[Iterator[bytes], str]:
    """The pieces to send and the file name; a path is opened here so a missing file fails before any RPC.

    `name` None means a path's basename; an explicit "" is refused rather than silently replaced.
    """
    if name is not None and not name:
        raise InvalidArgument("the name must not be empty")
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        handle = stack.enter_context(path.open("rb"))
        return _read_pieces(handle, piece_size), path.name if name is None else name
    if name is None:
        raise InvalidArgument("a name is required when uploading bytes, a file object or a stream of pieces")
    if isinstance(source, bytes | bytearray | memoryview):
        return _read_pieces(io.BytesIO(source), piece_size), name
    if hasattr(source, "read"):
        return _read_pieces(source, piece_size), name  # type: ignore[arg-type]
    if not isinstance(source, Iterable):
        raise InvalidArgument(f"cannot upload a {type(source).__name__}: give a path, bytes or a binary file object")
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
        if isinstance(piece, str):
            raise InvalidArgument("the file object is open in text mode; open it in binary mode ('rb')")
        yield piece


def _split_pieces(pieces: Iterable[bytes], piece_size: int) -> Iterator[bytes]:
    """Re-cuts caller pieces so none exceeds the message size the channel allows. A `bytes` piece that
    fits passes as it is: it cannot change under us, and copying it would cost a tenth of hashing it.
    Anything else is copied, since a caller may refill its buffer once it has been taken."""
    for piece in pieces:
        if type(piece) is bytes and 0 < len(piece) <= piece_size:
            yield piece
            continue
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


CHUNK_ID_RE = re.compile(r"[0-9a-f]{64}")


class DownloadStream:
    """An open Download call whose header has arrived: an iterator of the data pieces, verified.

    What is verified before a piece is yielded depends on the peer. A peer that sends chunk markers
    (the SDK always asks for them) announces each chunk's id, size and file offset before its data:
    a chunk the range covers whole is yielded only once its bytes hash (SHA-256) to its id, so a bad
    chunk raises IntegrityError before any of its bytes reach the caller; at most one chunk is held
    meanwhile. The chunks must also tile the range in file order without gap or overlap, and a
    whole-file download must bring exactly the version's chunk count and size. The first or last
    chunk of a range that starts or ends inside it cannot be hashed here: its position and length
    are checked, and its bytes come from a copy the peer verified against the id when it read it.

    A peer that predates markers sends none (`chunk_checked` is then False): the byte count is
    checked and, for the whole file, its SHA-256 once the last byte has arrived, so the pieces
    already yielded are only trustworthy once iteration ends without error.

    Close it (or use it as a context manager, or close the iteration) to cancel an abandoned
    download on the peer; closing after the end is harmless.
    """

    def __init__(self, call: Any, header: dfs_pb2.DownloadHeader, peer: str) -> None:
        self.info: VersionInfo = version_from_proto(header.version)
        self.offset: int = header.offset
        self.length: int = header.length
        """Bytes the peer announced for this range."""
        self.chunk_checked: bool = header.chunk_markers
        """Whether every chunk is verified before its bytes are yielded (see the class docstring)."""
        self._call = call
        # The iteration refers to the receiver, never to this object: a stream dropped unfinished
        # (`for piece in download(ref): break`) is freed at once, and that closes the iteration,
        # which cancels the call, without waiting for the cycle collector.
        self._receiver = _Receiver(self.info, self.offset, self.length, self.chunk_checked)
        self._pieces = self._receiver.pieces(call, peer)

    @property
    def is_whole_file(self) -> bool:
        return self.offset == 0 and self.length == self.info.size

    @property
    def received(self) -> int:
        """Bytes received so far (a chunk's bytes count on arrival, before it is verified)."""
        return self._receiver.received

    @property
    def progress(self) -> Progress | None:
        """Called with the size of each piece as it is yielded."""
        return self._receiver.progress

    @progress.setter
    def progress(self, callback: Progress | None) -> None:
        self._receiver.progress = callback

    def __iter__(self) -> DownloadStream:
        return self

    def __next__(self) -> bytes:
        return next(self._pieces)

    def close(self) -> None:
        """Cancels the call if data is still flowing; harmless after a complete download."""
        self._pieces.close()
        self._call.cancel()

    def __enter__(self) -> DownloadStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Receiver:
    """The receiving end of one download: counts, hashes and releases the data of the call."""

    def __init__(self, info: VersionInfo, offset: int, length: int, chunk_checked: bool) -> None:
        self.info = info
        self.length = length
        self.whole_file = offset == 0 and length == info.size
        self.received = 0
        self.progress: Progress | None = None
        self._hash = hashlib.sha256() if self.whole_file and not chunk_checked else None
        self._chunks = _ChunkCheck(info, offset, length) if chunk_checked else None

    def pieces(self, call: Any, peer: str) -> Generator[bytes, None, None]:
        try:
            for reply in call:
                for piece in self._accept(reply):
                    if self.progress is not None:
                        self.progress(len(piece))
                    yield piece
            self._verify()
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, peer=peer) from exc
        finally:  # also when the iteration is closed or dropped before the end
            call.cancel()

    def _accept(self, reply: dfs_pb2.DownloadReply | bytes) -> list[bytes] | tuple[bytes]:
        """The pieces that one message releases, once they passed the checks possible so far."""
        which = "data" if isinstance(reply, bytes) else reply.WhichOneof("msg")
        if which == "marker" and self._chunks is not None:
            assert not isinstance(reply, bytes)
            self._chunks.start(reply.marker)
            return []
        if which != "data":
            raise ServerError(f"the peer sent an unexpected {which or 'empty'} message in the download data")
        data = reply if isinstance(reply, bytes) else reply.data
        self.received += len(data)
        if self.received > self.length:
            raise IntegrityError(
                f"{self.info.name}: the peer sent more than the {self.length} bytes it announced"
            )
        if self._chunks is not None:
            return self._chunks.add(data)
        if self._hash is not None:
            self._hash.update(data)
        return (data,)

    def _verify(self) -> None:
        if self._chunks is not None:
            self._chunks.finish(self.whole_file)
        if self.received != self.length:
            raise IntegrityError(
                f"{self.info.name}: received {self.received} of the {self.length} bytes the peer announced"
            )
        if self._hash is not None:
            _check_sha256(self.info, self._hash.hexdigest())


def _check_sha256(info: VersionInfo, received: str) -> None:
    if received != info.sha256:
        raise IntegrityError(
            f"{info.name} version {info.version}: received data has sha256 {received}, expected {info.sha256}"
        )


class _ChunkCheck:
    """The chunk-by-chunk verifier of a download with markers: a marker, then that chunk's data.

    A chunk's data is held until it is complete (usually it is one message, so nothing waits) and
    released only after its checks pass; the next marker must start where the previous chunk ended.
    """

    def __init__(self, info: VersionInfo, offset: int, length: int) -> None:
        self._info = info
        self._start = offset
        self._end = offset + length
        self._next_offset: int | None = None  # where the next chunk must start; None before the first
        self._marker: dfs_pb2.ChunkMarker | None = None  # the chunk whose data is arriving
        self._digest: hashlib._Hash | None = None  # of a chunk the range covers whole
        self._held: list[bytes] = []
        self._missing = 0  # bytes of the current chunk still to come
        self.chunks = 0

    def add(self, data: bytes) -> list[bytes]:
        """The pieces of the chunk this data completes, once the chunk passed its checks; else []."""
        if self._marker is None:
            raise ServerError("the peer sent download data without the chunk marker it announced")
        if len(data) > self._missing:
            raise IntegrityError(f"{self._where()}: the peer sent more bytes than the chunk's part in the range")
        self._missing -= len(data)
        if self._digest is not None:
            self._digest.update(data)
        if self._missing:
            self._held.append(data)
            return []
        pieces, self._held = [*self._held, data], []
        self._check_digest()
        self._marker = None
        return pieces

    def start(self, marker: dfs_pb2.ChunkMarker) -> None:
        if self._marker is not None:
            raise IntegrityError(f"{self._where()}: the chunk ended {self._missing} bytes short")
        if not CHUNK_ID_RE.fullmatch(marker.chunk_id) or marker.size <= 0:
            raise ServerError("the peer sent a malformed chunk marker")
        name, start, expected = self._info.name, self._start, self._next_offset
        if expected is None and not marker.offset <= start < marker.offset + marker.size:
            raise IntegrityError(f"{name}: the first chunk the peer sent does not hold the range's first byte")
        if expected is not None and marker.offset != expected:
            raise IntegrityError(
                f"{name}: a chunk starts at byte {marker.offset}, but the previous one ended at byte {expected}"
            )
        first, last = max(start - marker.offset, 0), min(self._end - marker.offset, marker.size)
        if last <= first:
            raise IntegrityError(f"{name}: the peer sent a chunk outside the requested range")
        self._marker = marker
        self._next_offset = marker.offset + marker.size
        self._missing = last - first
        self._digest = hashlib.sha256() if (first, last) == (0, marker.size) else None
        self.chunks += 1

    def _check_digest(self) -> None:
        if self._digest is None:
            return
        actual = self._digest.hexdigest()
        assert self._marker is not None
        if actual != self._marker.chunk_id:
            raise IntegrityError(f"{self._where()}: received data has sha256 {actual}, expected the chunk id")

    def _where(self) -> str:
        info, marker = self._info, self._marker
        chunk = f"chunk {marker.chunk_id} at byte {marker.offset}" if marker is not None else "a chunk"
        return f"{info.name} version {info.version}: {chunk}"

    def finish(self, whole_file: bool) -> None:
        """The end-of-stream checks: no chunk cut short, and the whole file brought every chunk."""
        if self._marker is not None:
            raise IntegrityError(f"{self._where()}: the download ended {self._missing} bytes short")
        info = self._info
        if whole_file and self.chunks != info.chunk_count:
            raise IntegrityError(
                f"{info.name} version {info.version}: received {self.chunks} chunks, the version has"
                f" {info.chunk_count}"
            )


class OneReply:
    """A download that arrived whole in one Get reply, iterated as DownloadStream iterates a call:
    each chunk's marker, then its part of the data; a surplus the markers do not account for is
    passed on, to fail. From a peer without markers, a whole file is checked against its SHA-256
    before any of it is released, since all of it is at hand."""

    def __init__(self, reply: dfs_pb2.GetReply) -> None:
        self._reply = reply

    def __iter__(self) -> Iterator[dfs_pb2.DownloadReply | bytes]:
        reply, header = self._reply, self._reply.header
        if header.chunk_markers:
            yield from _split_by_markers(reply)
            return
        if header.offset == 0 and header.length == header.version.size:
            _check_sha256(version_from_proto(header.version), hashlib.sha256(reply.data).hexdigest())
        yield reply.data

    def cancel(self) -> None:
        pass


def _split_by_markers(reply: dfs_pb2.GetReply) -> Iterator[dfs_pb2.DownloadReply | bytes]:
    data = memoryview(reply.data)
    end = reply.header.offset + reply.header.length
    pos = 0
    for marker in reply.markers:
        first = max(reply.header.offset - marker.offset, 0)
        last = max(min(end - marker.offset, marker.size), first)
        yield dfs_pb2.DownloadReply(marker=marker)
        size = last - first
        yield reply.data if (pos, size) == (0, len(data)) else bytes(data[pos : pos + size])
        pos += size
    if pos < len(data):
        yield bytes(data[pos:])
