"""Cuts an async stream of byte pieces of any size into fixed-size chunks.

Pieces that already are exactly one chunk (bytes, or a view of a received message) pass through
without a copy. Otherwise bytes gather in a bytearray that never holds more than one chunk: a piece
is split at the chunk's end, and a full chunk is handed on as a read-only view of that bytearray
(no second copy) while the next chunk starts in a fresh one. So an upload waiting for the budget
with a chunk in hand holds that chunk and the piece that completed it, nothing more.
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
        view = memoryview(piece)
        while view:
            room = chunk_size - len(buf)
            buf += view[:room]
            view = view[room:]
            if len(buf) == chunk_size:
                chunk, buf = buf, bytearray()
                yield memoryview(chunk).toreadonly()
                del chunk
        del view
    if buf:
        yield memoryview(buf).toreadonly()
