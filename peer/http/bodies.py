"""Request bodies read as they arrive, in bounded pieces, by every HTTP app that takes uploads.

Nothing is read ahead of the consumer: while it holds a piece (an upload waiting for the peer's
budget) no read is pending, aiohttp's buffer fills to its high-water mark and pauses the socket, and
TCP flow control holds the client back. Only the piece handed on stays alive across the `yield`; the
parts it was joined from are dropped first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["PIECE_BYTES", "READ_BYTES", "body_pieces"]

PIECE_BYTES = 256 * 1024
"""Raw bytes gathered before a piece is passed on. An upload waiting for the peer's budget holds its
next chunk plus the piece that completed it, so a piece well under a chunk keeps a waiting
connection near one chunk."""
READ_BYTES = 64 * 1024
"""The most asked of aiohttp's body buffer at once: its read size (the listener's default read_bufsize).
aiohttp's `read(n)` raises the buffer's high-water mark to 2n for good, so a larger read would let a
connection buffer that much ahead of its consumer; at this size it stays at 128 KiB."""


async def body_pieces(
    request: web.Request,
    idle_s: float,
    *,
    too_slow: Callable[[], Exception],
    broken: Callable[[], Exception],
    piece_bytes: int = PIECE_BYTES,
) -> AsyncIterator[bytes]:
    """The raw body in pieces of `piece_bytes` (the last one shorter), each read within `idle_s`.

    A client that sends nothing for `idle_s` raises `too_slow()`; a body cut short (the connection
    lost, or a malformed transfer encoding) raises `broken()`, each edge with its own error. With
    `piece_bytes` at most READ_BYTES each read is handed on as it is, joined to nothing: for a
    consumer that does no per-piece work worth amortizing, that spares a copy of every byte."""
    content = request.content
    while True:
        parts: list[bytes] = []
        size = 0
        while size < piece_bytes:
            try:
                async with asyncio.timeout(idle_s):
                    part = await content.read(min(piece_bytes - size, READ_BYTES))
            except TimeoutError:
                raise too_slow() from None
            except (ConnectionError, HttpProcessingError) as exc:
                raise broken() from exc
            if not part:
                break
            parts.append(part)
            size += len(part)
        if not parts:
            return
        piece = parts[0] if len(parts) == 1 else b"".join(parts)
        del parts, part
        yield piece
        if size < piece_bytes:
            return
