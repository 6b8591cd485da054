"""`FrameStream`: one chunk-stream connection's bytes, read straight into the buffers the caller names.

A chunk arrives by `recv_into` the very buffer it is stored from (BufferedProtocol), so the only
copies on the way are the kernel's. Reading is paused whenever no read waits: a receiver holding a
chunk header while it waits for memory (the peer's budget) reads nothing more, and TCP holds the
sender back. Bytes that come in anyway (the transport asks for a buffer regardless, or a handshake
answer is followed by more) wait in a small stash that the next read takes first. Writes go to the
transport as views (no slice copies) and wait while the transport says its buffer is full.

A read or write that fails, times out or is cancelled leaves the stream at an unknown point of a
frame: the caller must `abort()` it, never reuse it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["FrameStream"]

_SPARE_BYTES = 64 * 1024
Buffer = bytes | bytearray | memoryview


class FrameStream(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._target: memoryview | None = None
        self._filled = 0
        self._wanted = 0
        self._read_waiter: asyncio.Future[None] | None = None
        self._stash = bytearray()
        self._spare = bytearray(_SPARE_BYTES)
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._lost: BaseException | None = None
        self._closed = asyncio.get_running_loop().create_future()
        self.on_lost: Callable[[Exception | None], None] | None = None
        """Told once when the connection ends (the server hands it to aiohttp's own protocol)."""

    # -- the protocol side ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.attach(transport)  # type: ignore[arg-type]

    def attach(self, transport: asyncio.Transport) -> None:
        """Takes over `transport` (on the server, one aiohttp has just upgraded) with reading paused."""
        self.transport = transport
        transport.pause_reading()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._target is None:
            return memoryview(self._spare)  # watching an idle stream, or paused a moment too late: stash
        return self._target[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._target is None:
            self._stash += self._spare[:nbytes]
            if len(self._stash) >= _SPARE_BYTES:
                self._pause()  # nobody reads: hold the sender back
            return
        self._filled += nbytes
        if self._filled >= self._wanted:
            self._done_reading(None)

    def eof_received(self) -> bool:
        self._done_reading(ConnectionResetError("the peer closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionResetError("the connection ended")
        self._done_reading(self._lost)
        self._resume_writers()
        if not self._closed.done():
            self._closed.set_result(None)
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost(exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._resume_writers()

    # -- the caller's side ------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._lost is not None or self.transport is None or self.transport.is_closing()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    async def read(self, view: memoryview, at_least: int | None = None) -> int:
        """Fills the front of `view` with at least `at_least` bytes (default: all of it); returns how
        many arrived. Raises ConnectionError when the connection ends first."""
        wanted = len(view) if at_least is None else at_least
        filled = self._take_stash(view)
        if filled >= wanted or not len(view):
            return filled
        if self._lost is not None or self.transport is None:
            raise ConnectionResetError("the connection ended")
        if self._read_waiter is not None:
            raise RuntimeError("two reads at once on one chunk stream")
        self._target, self._filled, self._wanted = view, filled, wanted
        waiter = self._read_waiter = asyncio.get_running_loop().create_future()
        self.transport.resume_reading()
        try:
            await waiter
        finally:
            if self._read_waiter is waiter:  # cancelled or timed out mid-read
                self._target, self._read_waiter = None, None
                self._pause()
        return self._filled

    async def write(self, *parts: Buffer) -> None:
        """Hands `parts` to the transport in order, then waits while its buffer is over the high mark."""
        if self._lost is not None or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the connection ended")
        for part in parts:
            self.transport.write(memoryview(part))  # a view: a partial send keeps the rest without a slice copy
        while self._write_paused and self._lost is None:
            waiter = self._drain_waiter = asyncio.get_running_loop().create_future()
            await waiter
        if self._lost is not None:
            raise ConnectionResetError("the connection ended")

    def watch(self) -> None:
        """Keeps reading while no read waits, so an idle stream notices at once when the peer closes it
        (anything else arriving then is stashed for the next read, where it cannot pass as a frame)."""
        if self.transport is not None and self._read_waiter is None and not self.transport.is_closing():
            self.transport.resume_reading()

    def unread(self, data: Buffer) -> None:
        """Puts back bytes read past what the caller wanted (the end of a handshake answer): the next
        read takes them first."""
        self._stash[:0] = data

    def abort(self) -> None:
        """Ends the connection at once (nothing queued is sent)."""
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Ends the connection once what is queued is sent."""
        if self.transport is not None:
            self.transport.close()

    # -- internals --------------------------------------------------------------------------------

    def _take_stash(self, view: memoryview) -> int:
        n = min(len(view), len(self._stash))
        if n:
            view[:n] = self._stash[:n]
            del self._stash[:n]
        return n

    def _pause(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def _done_reading(self, error: BaseException | None) -> None:
        waiter = self._read_waiter
        if waiter is None:
            return
        self._target, self._read_waiter = None, None
        self._pause()
        if waiter.done():
            return
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)

    def _resume_writers(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
