"""Cuts an async stream of byte pieces of any size into fixed-size chunks.

Pieces that already are exactly one chunk (bytes, or a view of a received message) pass through
without a copy; otherwise bytes gather in one bytearray that never holds more than a chunk plus one
piece.
"""

from __future__ import annotations

from collections.abc import AsyncIterator


async def chunk_stream(
    pieces: AsyncIterator[bytes | memoryview], chunk_size: int
) -> AsyncIterator[bytes | memoryview]:
    buf = bytearray()
    async for piece in pieces:
        if not buf and len(piece) == chunk_size:
            yield piece
            continue
        buf += piece
        while len(buf) >= chunk_size:
            yield bytes(buf[:chunk_size])
            del buf[:chunk_size]
    if buf:
        yield bytes(buf)
