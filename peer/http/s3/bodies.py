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

from peer.errors import ClientTooSlow
from peer.http.bodies import PIECE_BYTES, body_pieces
from peer.s3 import AuthResult, BodyReader, BodyResult, RequestHead, S3Error, open_body

__all__ = ["PIECE_BYTES", "ObjectBody", "read_document"]

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


def _raw_pieces(request: web.Request, idle_s: float) -> AsyncIterator[bytes]:
    """The raw body in pieces (peer.http.bodies), with S3's errors for a silent or a broken client."""
    return body_pieces(
        request, idle_s,
        too_slow=lambda: ClientTooSlow(f"the client sent nothing for {idle_s:g} s"),
        broken=lambda: S3Error("IncompleteBody", "The request body terminated unexpectedly"),
    )
