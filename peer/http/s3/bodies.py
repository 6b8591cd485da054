"""Request bodies: read as they arrive, decoded and verified through the S3 core's `open_body`.

An object's body is never held whole: raw bytes are read as they arrive, decoded (aws-chunked
framing removed) and handed on one piece at a time: each read as it is (`READ_BYTES`), or, when
decoding means hashing signed chunks, joined into pieces of `PIECE_BYTES` decoded in a worker thread.
The receive path does no other hashing: the digests the body is checked
against (the MD5 that becomes the ETag and is compared with Content-MD5, the declared checksums) are
computed by `ObjectBody.tap` in the upload's own hashing pass, one worker-thread hop per chunk beside
the file's SHA-256, which in turn stands for the signed x-amz-content-sha256. So a large PUT costs
the peer one MD5 pass (and a checksum) over what any upload costs, and reading the socket never
waits for a hash. Nothing read is trusted until `ObjectBody.verify` has checked it all, which
happens before the upload may commit. A client that sends nothing for the idle timeout is
`RequestTimeout`; a body cut short (the connection lost, or fewer bytes than declared) is
`IncompleteBody`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from peer.errors import ClientTooSlow
from peer.http.bodies import PIECE_BYTES, READ_BYTES, body_pieces
from peer.s3 import AuthResult, BodyReader, BodyResult, RequestHead, S3Error, open_body

__all__ = ["PIECE_BYTES", "ObjectBody", "read_document"]

THREAD_BYTES = 256 * 1024
"""Pieces at least this large whose decoding hashes (signed aws-chunked) are decoded in a worker thread."""


class ObjectBody:
    """The bytes of a PUT's object as they arrive; the upload that stores them passes each to `tap`
    and then has them checked by `verify` before it commits."""

    def __init__(self, request: web.Request, auth: AuthResult, head: RequestHead, idle_s: float) -> None:
        self._request = request
        self._reader = open_body(auth, head, sha256_given=True)
        self._idle_s = idle_s
        self.size: int | None = None
        """Set once the whole body arrived and its framing held (the digests are `verify`'s)."""
        self.result: BodyResult | None = None
        """Set once `verify` found the body matching every digest it declared."""

    async def pieces(self) -> AsyncIterator[bytes | memoryview]:
        """The object's bytes, not yet hashed; raises the `S3Error` the body's framing deserves, at
        the end at the latest."""
        threaded = self._reader.decode_hashes
        async for raw in _raw_pieces(self._request, self._idle_s, PIECE_BYTES if threaded else READ_BYTES):
            if threaded and len(raw) >= THREAD_BYTES:
                data = await asyncio.to_thread(self._reader.decode, raw)
            else:
                data = self._reader.decode(raw)
            del raw
            if data:
                yield data
        self.size = self._reader.end()

    def tap(self, data: bytes | memoryview) -> None:
        """Hashes the object's bytes for its digests: given each byte once, in order (`UploadService`'s
        `Tap`)."""
        self._reader.hash(data)

    def verify(self, sha256: str) -> BodyResult:
        """Once every byte went through `tap`, and given their SHA-256: the body checked against
        every digest it declared (raises `BadDigest`, `XAmzContentSHA256Mismatch`)."""
        self.result = self._reader.finish(sha256)
        return self.result


async def read_document(request: web.Request, auth: AuthResult, head: RequestHead, idle_s: float,
                        limit: int) -> bytes:
    """A small request body (an XML document) whole, verified as an object's body is; a body larger
    than `limit` is refused before more of it is read."""
    reader: BodyReader = open_body(auth, head)
    parts: list[bytes | memoryview] = []
    size = 0
    async for raw in _raw_pieces(request, idle_s):
        data = reader.feed(raw)
        size += len(data)
        if size > limit:
            raise S3Error("InvalidRequest", f"The request document is larger than {limit} bytes.")
        parts.append(data)
    reader.finish()
    return b"".join(parts)


def _raw_pieces(request: web.Request, idle_s: float, piece_bytes: int = PIECE_BYTES) -> AsyncIterator[bytes]:
    """The raw body in pieces (peer.http.bodies), with S3's errors for a silent or a broken client."""
    return body_pieces(
        request, idle_s, piece_bytes=piece_bytes,
        too_slow=lambda: ClientTooSlow(f"the client sent nothing for {idle_s:g} s"),
        broken=lambda: S3Error("IncompleteBody", "The request body terminated unexpectedly"),
    )
