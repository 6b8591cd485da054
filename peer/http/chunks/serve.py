"""GET /peer/chunks: other peers open chunk streams here, then put and get chunks over them.

The opening is an ordinary request of the HTTP listener, checked as `/gossip` is (a verified peer
certificate with mutual TLS, else a credential signed with the cluster secret); once it is accepted
with 101, the connection leaves aiohttp and carries frames (frames.py), read by `FrameStream` into
the buffers they are stored from. aiohttp's own protocol object is still told when the connection
ends, so the listener's bookkeeping stays right.

One request at a time per stream (a sender opens more streams for more at once):
- PUT: the body's bytes are set aside from the peer-wide `budget` before any is read (the socket is
  not read meanwhile, so TCP holds the sender back), checked against its body tag where the stream
  has them, stored durably (ChunkStore.put: against the sender's XXH3-64 where TLS or the body tag
  vouches for the sender, else by SHA-256 against the id), and only then acknowledged STORED.
- GET: the copy is read and verified against its id (a corrupt one is quarantined), sent as DATA
  with its XXH3-64; NOT_FOUND when there is no intact copy, so the requester asks another holder.
A body that stalls for `body_timeout_s`, a stream idle for `idle_timeout_s`, and a requester that
stops reading an answer for `body_timeout_s` end the stream; so does any frame that breaks the
protocol (after an ERROR frame saying why, when one can still be sent). A stream that ends
mid-request has stored nothing of it, unless its chunk was already being written: such a chunk is
complete and durable, and garbage collection takes it if no version comes to reference it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from peer.errors import ChunkCorrupt, ChunkNotFound, DfsError, InvalidRequest, StorageFull, Unauthenticated
from peer.http.chunks.frames import (
    HEADER_BYTES,
    MAX_REASON_BYTES,
    ErrorCode,
    Frame,
    FrameError,
    Kind,
    Sealer,
    decode_header,
    encode_header,
)
from peer.http.chunks.stream import FrameStream
from peer.http.chunks.upgrade import (
    ACCEPT_PURPOSE,
    CHUNKS_PATH,
    OPEN_PURPOSE,
    PROTOCOL_V1,
    PROTOCOLS,
    session_key,
)
from peer.http.gossip import RefusalLog
from peer.http.gossip_wire import AUTH_HEADER, MAX_REASON_CHARS, nonce_of
from peer.http.server import Mount
from peer.security.peerauth import PeerSigner
from peer.storage.chunkstore import ChunkStore, xxh3_64
from peer.transfer.budget import ByteBudget

__all__ = ["ChunkServing", "chunks_app"]

log = logging.getLogger(__name__)

ERROR_SEND_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class ChunkServing:
    """What the stream's server side works with, and its limits."""

    store: ChunkStore
    budget: ByteBudget
    """Bytes of received and outgoing chunk bodies held at once, all streams together."""
    max_body: int
    """The largest chunk a PUT may carry."""
    body_timeout_s: float
    """How long one body may take to arrive, or an answer to be taken by the requester."""
    idle_timeout_s: float
    """How long a stream may wait for its next request."""
    moved: Callable[[str, int], None] = lambda _direction, _nbytes: None
    """Told of each body stored ("received") or sent ("sent"), with its size (the metrics count them)."""


def chunks_app(serving: ChunkServing, *, signer: PeerSigner | None = None, require_peer_cert: bool = False,
               protocols: tuple[str, ...] = PROTOCOLS) -> Mount:
    """`require_peer_cert`: only connections with a CA-verified client certificate (serve with a
    `tls.server_ssl_context`); `signer`: only openings signed with the cluster secret, and every frame
    tagged. With neither, any client may put and get chunks: only for a trusted network. `protocols`:
    the stream versions served, newest first (fewer only to stand in for an older peer)."""
    refusals = RefusalLog(what="chunk stream")
    streams: set[FrameStream] = set()

    def refuse(request: web.Request, status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
        refusals.refused(status, request.remote, reason)
        return web.Response(status=status, text=reason[:MAX_REASON_CHARS], headers=headers)

    async def open_stream(request: web.Request) -> web.StreamResponse:
        if require_peer_cert and not _has_peer_cert(request):
            return refuse(request, 403, "a peer certificate is required")
        protocol = _asked_for(request, protocols)
        if protocol is None:
            offered = request.headers.get("Upgrade", "")[:40] or "no upgrade"
            return refuse(request, 426, f"this peer speaks {' or '.join(protocols)}, not {offered}",
                          {"Upgrade": protocols[0], "Connection": "Upgrade"})
        headers = {"Upgrade": protocol, "Connection": "Upgrade"}
        key = None
        if signer is not None:
            try:
                client_nonce = signer.verify(OPEN_PURPOSE, protocol.encode(), request.headers.get(AUTH_HEADER))
            except Unauthenticated as exc:
                return refuse(request, 401, str(exc), {"WWW-Authenticate": AUTH_HEADER})
            accept = headers[AUTH_HEADER] = signer.sign(ACCEPT_PURPOSE, client_nonce.encode())
            key = session_key(signer, client_nonce, nonce_of(accept), protocol)
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the connection ended before the chunk stream opened")
        response = web.StreamResponse(status=101, headers=headers)
        writer = await response.prepare(request)
        if writer is not None:
            await writer.drain()
        stream = FrameStream()
        stream.on_lost = transport.get_protocol().connection_lost  # aiohttp still counts the connection
        transport.set_protocol(stream)
        stream.attach(transport)
        streams.add(stream)
        try:
            sealer = Sealer(key, client=False, body_tags=protocol != PROTOCOL_V1)
            await _Session(stream, sealer, serving, request.remote).run()
        finally:
            streams.discard(stream)
            stream.abort()
        return response

    async def close_streams(_app: web.Application) -> None:
        for stream in list(streams):
            stream.abort()

    app = web.Application()
    app.router.add_get("", open_stream)
    app.on_shutdown.append(close_streams)
    return Mount(CHUNKS_PATH, app)


def _asked_for(request: web.Request, protocols: tuple[str, ...]) -> str | None:
    """The stream version the opening asks for, if this peer speaks it."""
    connection = {token.strip().lower() for token in request.headers.get("Connection", "").split(",")}
    offered = request.headers.get("Upgrade", "").strip().lower()
    return offered if "upgrade" in connection and offered in protocols else None


def _has_peer_cert(request: web.Request) -> bool:
    # As for /gossip: the server context verifies any certificate offered (CERT_OPTIONAL), so a
    # non-empty peercert is one the cluster CA signed.
    transport = request.transport
    return transport is not None and bool(transport.get_extra_info("peercert"))


class _Session:
    """One accepted stream: requests in, answers out, one at a time, until the stream ends."""

    def __init__(self, stream: FrameStream, sealer: Sealer, serving: ChunkServing, remote: str | None) -> None:
        self._stream = stream
        self._sealer = sealer
        self._serving = serving
        self._remote = remote

    async def run(self) -> None:
        header = bytearray(HEADER_BYTES)
        while True:
            try:
                async with asyncio.timeout(self._serving.idle_timeout_s):
                    await self._stream.read(memoryview(header))
            except (TimeoutError, ConnectionError):
                return  # idle, or the sender hung up between requests: nothing is lost
            try:
                self._sealer.check(header)
                frame = decode_header(header, self._serving.max_body)
                if frame.kind == Kind.PUT:
                    await self._put(frame)
                elif frame.kind == Kind.GET:
                    await self._get(frame)
                else:
                    raise FrameError(f"a {frame.kind.name} frame where a request was due")
            except FrameError as exc:
                log.warning("chunk stream from %s broke the protocol: %s", self._remote, exc)
                await self._send_error(ErrorCode.INVALID, str(exc))
                return
            except (TimeoutError, ConnectionError) as exc:
                log.debug("chunk stream from %s ended mid-request: %r", self._remote, exc)
                return

    async def _put(self, frame: Frame) -> None:
        serving = self._serving
        await serving.budget.acquire(frame.length)
        stored: asyncio.Future[bool] | None = None
        try:
            received = memoryview(bytearray(self._sealer.body_span(frame.length)))
            async with asyncio.timeout(serving.body_timeout_s):
                await self._stream.read(received)
            body = self._sealer.checked_body(received, frame.length)
            stored = asyncio.ensure_future(
                asyncio.to_thread(serving.store.put, frame.chunk_id, body, False, self._trusted(frame)))
            try:
                await asyncio.shield(stored)
            except (DfsError, OSError) as exc:
                await self._answer_error(frame, exc)
                return
            await self._answer(Frame(Kind.STORED, frame.chunk_id))
            serving.moved("received", frame.length)
        finally:
            # A write already in its thread holds the body until it ends, cancelled or not.
            if stored is None or stored.done():
                serving.budget.release(frame.length)
            else:
                stored.add_done_callback(lambda _: serving.budget.release(frame.length))

    async def _get(self, frame: Frame) -> None:
        serving = self._serving
        size = serving.store.size_of(frame.chunk_id) or 0
        await serving.budget.acquire(size)
        try:
            try:
                data, xxh3 = await asyncio.to_thread(self._read_for_sending, frame.chunk_id)
            except (ChunkNotFound, ChunkCorrupt):  # a corrupt copy was quarantined by the read
                await self._answer(Frame(Kind.ERROR, frame.chunk_id, code=ErrorCode.NOT_FOUND))
                return
            except (DfsError, OSError) as exc:
                await self._answer_error(frame, exc)
                return
            await self._answer(Frame(Kind.DATA, frame.chunk_id, len(data), xxh3), data)
            serving.moved("sent", len(data))
        finally:
            serving.budget.release(size)

    def _trusted(self, frame: Frame) -> int | None:
        """The sender's XXH3-64 where something authenticates bodies (TLS, the body tag) or no attacker
        is assumed (no peer authentication); None on a keyed dfs-chunks/1 stream, so the body is
        checked against its id."""
        return frame.xxh3 if self._sealer.trusts_checksums else None

    def _read_for_sending(self, chunk_id: str) -> tuple[bytes, int]:
        data = self._serving.store.get(chunk_id)  # verified against its id
        return data, xxh3_64(data)

    async def _answer(self, frame: Frame, body: bytes | bytearray | memoryview = b"") -> None:
        async with asyncio.timeout(self._serving.body_timeout_s):
            await self._send(frame, body)

    async def _send(self, frame: Frame, body: bytes | bytearray | memoryview) -> None:
        await self._stream.write(*self._sealer.sealed(encode_header(frame), body))

    async def _answer_error(self, frame: Frame, exc: Exception) -> None:
        reason = _reason(str(exc))
        code = _error_code(exc)
        if code == ErrorCode.FAILED:
            log.warning("chunk %s from %s: %s", frame.chunk_id[:12], self._remote, exc)
        await self._answer(Frame(Kind.ERROR, frame.chunk_id, len(reason), code=code), reason)

    async def _send_error(self, code: ErrorCode, text: str) -> None:
        reason = _reason(text)
        try:
            async with asyncio.timeout(ERROR_SEND_TIMEOUT_S):
                await self._send(Frame(Kind.ERROR, "00" * 32, len(reason), code=code), reason)
        except (TimeoutError, ConnectionError):
            pass
        self._stream.close()


def _error_code(exc: Exception) -> ErrorCode:
    if isinstance(exc, ChunkCorrupt):
        return ErrorCode.CORRUPT
    if isinstance(exc, StorageFull):
        return ErrorCode.STORAGE_FULL
    if isinstance(exc, InvalidRequest):
        return ErrorCode.INVALID
    if isinstance(exc, ChunkNotFound):
        return ErrorCode.NOT_FOUND
    return ErrorCode.FAILED


def _reason(text: str) -> bytes:
    return text.encode("utf-8")[:MAX_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")
