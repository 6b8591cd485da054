"""`StreamChunkPeers`: ChunkPeers with every chunk body on chunk streams, and the small calls on `fallback`.

Puts and gets (replica writes, reads from holders, repair, handoff and rebalance pushes, fragment
fetches: everything that carries chunk data) go over pooled chunk streams to the peer's HTTP
listener, one exchange per stream at a time, more streams for more at once (at most
MAX_STREAMS_PER_PEER per peer, so a burst queues instead of opening sockets without bound). The
small calls (has_many, delete, compare_digests, stats) stay on `fallback` (gRPC).

Version rule: a peer that answers the opening with 404 runs the previous version, which takes chunk
data over gRPC only; it is served through `fallback` (and its writer) for RETRY_STREAM_S, then the
stream is tried again, so a rolling upgrade moves onto streams by itself. Any other refusal (not a
peer, another stream version) fails the call with PeerUnavailable naming it; frames are never sent
to a peer that has not agreed to this version.

Failures map to what services expect, once, here: ChunkNotFound (no intact copy there), ChunkCorrupt
(the bytes arrived damaged), PeerUnavailable (everything else). Every call ends within `timeout_s`;
a call that fails, times out or is cancelled (an upload whose client went away) aborts its stream.
A reused stream the peer closed as idle the moment it was picked is retried once on a new one:
puts and gets are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from peer.errors import ChunkCorrupt, ChunkNotFound, DfsError, PeerUnavailable, Unauthenticated
from peer.http.chunks.dial import ChunkConn, NotServed, Refused, open_stream
from peer.http.chunks.frames import ErrorCode, Frame, FrameError, Kind
from peer.security.peerauth import PeerSigner
from peer.transfer.peers import ChunkPeers, ChunkWriter, DigestAnswer, FetchedChunk

__all__ = ["MAX_STREAMS_PER_PEER", "RETRY_STREAM_S", "StreamChunkPeers"]

log = logging.getLogger(__name__)

RETRY_STREAM_S = 60.0
MAX_STREAMS_PER_PEER = 64
MAX_IDLE_PER_PEER = 16

T = TypeVar("T")
Buffer = bytes | memoryview  # what ChunkPeers callers hand over


class Fallback(ChunkPeers, Protocol):
    """The other transport (gRPC): the small calls, and chunk data for peers without streams."""

    async def close(self) -> None: ...


class StreamChunkPeers:
    def __init__(
        self,
        resolve: Callable[[str], str | None],
        fallback: Fallback,
        *,
        timeout_s: float,
        max_body: int,
        signer: PeerSigner | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`resolve` maps a node id to its HTTP listener's address (gossip's); `max_body` bounds a
        chunk received; `signer` or `ssl_context` as the peers' HTTP listeners expect (see dial.py)."""
        self._resolve = resolve
        self.fallback = fallback
        self._timeout = timeout_s
        self._max_body = max_body
        self._signer = signer
        self._ssl = ssl_context
        self._clock = clock
        self._idle: dict[str, list[ChunkConn]] = defaultdict(list)
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._not_served_until: dict[str, float] = {}

    # -- ChunkPeers -------------------------------------------------------------------------------

    def writer(self) -> ChunkWriter:
        return _Writer(self)

    async def put(self, node_id: str, chunk_id: str, data: Buffer, xxh3: int | None = None) -> None:
        if not await self.try_put(node_id, chunk_id, data, xxh3):
            await self.fallback.put(node_id, chunk_id, data, xxh3)

    async def get(self, node_id: str, chunk_id: str) -> FetchedChunk:
        addr = self._addr(node_id)
        if not self._streams_to(addr):
            return await self.fallback.get(node_id, chunk_id)
        try:
            return await self._call(node_id, addr, lambda conn: _get(conn, node_id, chunk_id))
        except NotServed:
            self._not_served(node_id, addr)
            return await self.fallback.get(node_id, chunk_id)

    async def has_many(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        return await self.fallback.has_many(node_id, chunk_ids)

    async def delete(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        return await self.fallback.delete(node_id, chunk_ids)

    async def compare_digests(
        self, node_id: str, from_node: str, ring_digest: str, digests: Sequence[bytes]
    ) -> DigestAnswer:
        return await self.fallback.compare_digests(node_id, from_node, ring_digest, digests)

    async def stats(self, node_id: str, timeout_s: float) -> dict[str, Any]:
        return await self.fallback.stats(node_id, timeout_s)

    async def close(self) -> None:
        """Ends every idle stream (calls in flight end with their callers), then the fallback."""
        for conns in self._idle.values():
            for conn in conns:
                conn.stream.abort()
        self._idle.clear()
        await self.fallback.close()

    # -- the stream path --------------------------------------------------------------------------

    async def try_put(self, node_id: str, chunk_id: str, data: Buffer, xxh3: int | None) -> bool:
        """Puts over a stream; False (nothing sent) when the peer takes chunk data over gRPC only."""
        addr = self._addr(node_id)
        if not self._streams_to(addr):
            return False
        try:
            await self._call(node_id, addr, lambda conn: _put(conn, node_id, chunk_id, data, xxh3))
        except NotServed:
            self._not_served(node_id, addr)
            return False
        return True

    def _addr(self, node_id: str) -> str:
        addr = self._resolve(node_id)
        if not addr:
            raise PeerUnavailable(node_id, "no known address")
        return addr

    def _streams_to(self, addr: str) -> bool:
        until = self._not_served_until.get(addr)
        if until is None:
            return True
        if self._clock() < until:
            return False
        del self._not_served_until[addr]
        return True

    def _not_served(self, node_id: str, addr: str) -> None:
        if addr not in self._not_served_until:
            log.info("peer %s (%s) serves no chunk streams (an earlier version): chunk data to it goes over gRPC",
                     node_id[:8], addr)
        self._not_served_until[addr] = self._clock() + RETRY_STREAM_S

    async def _call(self, node_id: str, addr: str, exchange: Callable[[ChunkConn], Awaitable[T]]) -> T:
        slots = self._slots.setdefault(addr, asyncio.Semaphore(MAX_STREAMS_PER_PEER))
        try:
            async with asyncio.timeout(self._timeout), slots:
                for attempt in range(2):
                    conn, reused = await self._connection(node_id, addr, fresh=attempt > 0)
                    try:
                        return await exchange(conn)
                    except ConnectionError as exc:
                        if reused and not conn.answered and attempt == 0:
                            continue  # closed as idle by the peer just as we picked it
                        raise PeerUnavailable(node_id, f"chunk stream: {exc or type(exc).__name__}") from exc
                    except FrameError as exc:
                        raise PeerUnavailable(node_id, f"chunk stream: {exc}") from exc
                    finally:
                        self._put_back(conn)
                raise AssertionError("unreachable")
        except TimeoutError as exc:
            raise PeerUnavailable(node_id, f"no answer on the chunk stream within {self._timeout} s") from exc

    async def _connection(self, node_id: str, addr: str, *, fresh: bool) -> tuple[ChunkConn, bool]:
        """An idle stream to `addr`, else a new one; `fresh`: a new one (the idle ones are suspect)."""
        idle = self._idle.get(addr)
        if fresh and idle:
            for conn in idle:
                conn.stream.abort()
            idle.clear()
        while idle:
            conn = idle.pop()
            if not conn.stream.is_closed:
                return conn, True
        try:
            return await open_stream(addr, self._max_body, signer=self._signer, ssl_context=self._ssl), False
        except Refused as exc:
            raise PeerUnavailable(node_id, f"chunk stream refused: {exc}") from exc
        except (FrameError, Unauthenticated) as exc:  # no HTTP, or not a peer of this cluster answering
            raise PeerUnavailable(node_id, f"chunk stream not opened: {exc}") from exc
        except OSError as exc:
            raise PeerUnavailable(node_id, f"cannot reach {addr}: {exc.strerror or exc}") from exc

    def _put_back(self, conn: ChunkConn) -> None:
        idle = self._idle[conn.addr]
        if conn.clean and not conn.stream.is_closed and len(idle) < MAX_IDLE_PER_PEER:
            conn.answered = False
            conn.stream.watch()
            idle.append(conn)
        else:
            conn.stream.abort()


async def _put(conn: ChunkConn, node_id: str, chunk_id: str, data: Buffer, xxh3: int | None) -> None:
    await conn.send(Frame(Kind.PUT, chunk_id, len(data), xxh3), data)
    frame, reason = await conn.answer()
    conn.done()
    if frame.kind == Kind.STORED and frame.chunk_id == chunk_id:
        return
    raise _answer_error(frame, reason, node_id, chunk_id, "STORED")


async def _get(conn: ChunkConn, node_id: str, chunk_id: str) -> FetchedChunk:
    await conn.send(Frame(Kind.GET, chunk_id))
    frame, reason = await conn.answer()
    if frame.kind == Kind.DATA and frame.chunk_id == chunk_id:
        data = await conn.read_body(frame.length)
        conn.done()
        return FetchedChunk(memoryview(data), frame.xxh3 if conn.trusts_checksums else None)
    conn.done()
    raise _answer_error(frame, reason, node_id, chunk_id, "DATA")


def _answer_error(frame: Frame, reason: bytes, node_id: str, chunk_id: str, expected: str) -> DfsError:
    if frame.kind != Kind.ERROR:
        return PeerUnavailable(node_id, f"chunk stream: {frame.kind.name} for {frame.chunk_id[:12]} "
                                        f"where {expected} for {chunk_id[:12]} was due")
    if frame.code == ErrorCode.NOT_FOUND:
        return ChunkNotFound(chunk_id)
    if frame.code == ErrorCode.CORRUPT:
        return ChunkCorrupt(chunk_id, f"peer {node_id[:8]}")
    text = "".join(c if c.isprintable() else "?" for c in reason.decode("utf-8", "replace"))
    return PeerUnavailable(node_id, f"{ErrorCode(frame.code).name}: {text}")


class _Writer:
    """The puts of one upload. Streams are pooled per peer and shared, so this only keeps the
    fallback's writer (its gRPC streams to peers of the previous version) for the upload's length."""

    def __init__(self, peers: StreamChunkPeers) -> None:
        self._peers = peers
        self._fallback: ChunkWriter | None = None

    async def put(self, node_id: str, chunk_id: str, data: Buffer, xxh3: int | None = None) -> None:
        if not await self._peers.try_put(node_id, chunk_id, data, xxh3):
            if self._fallback is None:
                self._fallback = self._peers.fallback.writer()
            await self._fallback.put(node_id, chunk_id, data, xxh3)

    async def close(self) -> None:
        if self._fallback is not None:
            await self._fallback.close()

    def abort(self) -> None:
        if self._fallback is not None:
            self._fallback.abort()
