"""Request bodies: read as they arrive, decoded and verified through the S3 core's `open_body`.

An object's body is never held whole: raw bytes are read in pieces of `PIECE_BYTES`, decoded
(aws-chunked framing removed) and hashed (the client's digests and checksums, and the MD5 that
becomes the ETag) in a worker thread when the piece is large, and handed on one piece at a time.
Nothing read is trusted until `BodyReader.finish` has verified it all, which happens before the
upload may commit. A client that sends nothing for the idle timeout is `RequestTimeout`; a body
cut short (the connection lost, or fewer bytes than declared) is `IncompleteBody`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from peer.errors import ClientTooSlow
from peer.s3 import AuthResult, BodyReader, BodyResult, RequestHead, S3Error, open_body

__all__ = ["PIECE_BYTES", "ObjectBody", "read_document"]

PIECE_BYTES = 256 * 1024
"""Raw bytes gathered before a piece is decoded and passed on. An upload waiting for the peer's
budget holds its next chunk plus the piece that completed it, so a piece well under a chunk keeps
a waiting connection near one chunk; as large as THREAD_BYTES, every full piece is hashed off the loop."""
READ_BYTES = 64 * 1024
"""The most asked of aiohttp's body buffer at once: its read size (the listener's default read_bufsize).
aiohttp's `read(n)` raises the buffer's high-water mark to 2n for good, so a larger read would let a
connection buffer that much ahead of its consumer; at this size it stays at 128 KiB."""
THREAD_BYTES = 256 * 1024
"""Pieces at least this large are decoded and hashed in a worker thread, off the event loop."""


class ObjectBody:
    """The bytes of a PUT's object as they arrive, with their MD5 and, once ended, the verified result."""

    def __init__(self, request: web.Request, auth: AuthResult, head: RequestHead, idle_s: float) -> None:
        self._request = request
        self._reader = open_body(auth, head)
        self._idle_s = idle_s
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.result: BodyResult | None = None
        """Set once the whole body arrived and matched every digest it declared."""

    @property
    def etag(self) -> str:
        return self._md5.hexdigest()

    async def pieces(self) -> AsyncIterator[bytes]:
        """The object's bytes; raises the `S3Error` the body deserves, at the end at the latest."""
        async for raw in _raw_pieces(self._request, self._idle_s):
            data = await asyncio.to_thread(self._take, raw) if len(raw) >= THREAD_BYTES else self._take(raw)
            del raw  # an aws-chunked piece's framing is not kept while the upload holds its data
            if data:
                yield data
        self.result = self._reader.finish()

    def _take(self, raw: bytes) -> bytes:
        data = self._reader.feed(raw)
        self._md5.update(data)
        return data


async def read_document(request: web.Request, auth: AuthResult, head: RequestHead, idle_s: float,
                        limit: int) -> bytes:
    """A small request body (an XML document) whole, verified as an object's body is; a body larger
    than `limit` is refused before more of it is read."""
    reader: BodyReader = open_body(auth, head)
    parts: list[bytes] = []
    size = 0
    async for raw in _raw_pieces(request, idle_s):
        data = reader.feed(raw)
        size += len(data)
        if size > limit:
            raise S3Error("InvalidRequest", f"The request document is larger than {limit} bytes.")
        parts.append(data)
    reader.finish()
    return b"".join(parts)


async def _raw_pieces(request: web.Request, idle_s: float) -> AsyncIterator[bytes]:
    """The raw body in pieces of PIECE_BYTES (the last one shorter), each read within the idle timeout.

    Nothing is read ahead of the consumer: while it holds a piece (an upload waiting for the peer's
    budget) no read is pending, aiohttp's buffer fills to its high-water mark and pauses the socket,
    and TCP flow control holds the client back. Only the piece handed on stays alive across the
    `yield`; the parts it was joined from are dropped first.
    """
    content = request.content
    while True:
        parts: list[bytes] = []
        size = 0
        while size < PIECE_BYTES:
            try:
                async with asyncio.timeout(idle_s):
                    part = await content.read(min(PIECE_BYTES - size, READ_BYTES))
            except TimeoutError:
                raise ClientTooSlow(f"the client sent nothing for {idle_s:g} s") from None
            except (ConnectionError, HttpProcessingError) as exc:
                raise S3Error("IncompleteBody", "The request body terminated unexpectedly") from exc
            if not part:
                break
            parts.append(part)
            size += len(part)
        if not parts:
            return
        piece = parts[0] if len(parts) == 1 else b"".join(parts)
        del parts, part
        yield piece
        if size < PIECE_BYTES:
            return
