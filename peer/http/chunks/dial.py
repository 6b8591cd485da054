"""The requesting side of one chunk stream: dial, open it by upgrade, exchange frames.

`open_stream` dials a peer's HTTP listener (over mutual TLS when given a context: the peer must show
a certificate for PEER_TLS_NAME from the cluster CA, and is shown ours), asks for the upgrade and
checks the answer. With the cluster secret the opening is signed and the answer must be signed over
our nonce, so a replayed or forged answer is refused; both nonces key the frame tags. A peer that
answers 404 predates the stream: `NotServed` says so, and the caller uses its other transport. One
that answers 426 naming the previous stream version is opened again with that version.

A `ChunkConn` carries one request and its answer at a time. Its `clean` flag is True only between
exchanges: a connection that fails, times out or is cancelled mid-exchange must be aborted, never
reused, since it sits at an unknown point of a frame.
"""

from __future__ import annotations

import asyncio
import ssl

from peer.config import split_hostport
from peer.http.chunks.frames import HEADER_BYTES, MAX_REASON_BYTES, Frame, FrameError, Kind, Sealer, decode_header
from peer.http.chunks.frames import encode_header as _encode
from peer.http.chunks.stream import FrameStream
from peer.http.chunks.upgrade import (
    ACCEPT_PURPOSE,
    HEAD_END,
    MAX_HEAD_BYTES,
    OPEN_PURPOSE,
    PROTOCOL_V1,
    PROTOCOLS,
    ResponseHead,
    parse_response_head,
    request_head,
    session_key,
)
from peer.http.gossip_wire import AUTH_HEADER, MAX_REASON_CHARS, nonce_of
from peer.http.tls import PEER_TLS_NAME
from peer.security.peerauth import PeerSigner

__all__ = ["ChunkConn", "NotServed", "Refused", "open_stream"]

_HEAD_READ_BYTES = 1024


class NotServed(Exception):
    """The peer has no chunk stream (404): a peer of the previous version, which serves gRPC only."""


class Refused(Exception):
    """The peer refused the stream (not a peer of ours, another protocol version): one line saying why."""


class ChunkConn:
    def __init__(self, addr: str, stream: FrameStream, sealer: Sealer, max_body: int) -> None:
        self.addr = addr
        self.stream = stream
        self.clean = True
        """Between exchanges: safe to send the next request."""
        self.answered = False
        """Some answer has arrived on this connection (so a failure now is not an idle close)."""
        self._sealer = sealer
        self._max_body = max_body

    @property
    def trusts_checksums(self) -> bool:
        """Whether a body's XXH3-64 may stand for its SHA-256 (see `Sealer.trusts_checksums`)."""
        return self._sealer.trusts_checksums

    async def send(self, frame: Frame, body: bytes | bytearray | memoryview = b"") -> None:
        self.clean = False
        await self.stream.write(*self._sealer.sealed(_encode(frame), body))

    async def answer(self) -> tuple[Frame, bytes]:
        """The next answer's header, and the reason text of an ERROR (a DATA body is `read_body`'s)."""
        header = bytearray(HEADER_BYTES)
        await self.stream.read(memoryview(header))
        self.answered = True
        self._sealer.check(header)
        frame = decode_header(header, self._max_body)
        if frame.kind not in (Kind.STORED, Kind.DATA, Kind.ERROR):
            raise FrameError(f"a {frame.kind.name} frame where an answer was due")
        reason = b""
        if frame.kind == Kind.ERROR:
            reason = bytes(await self.read_body(frame.length))
        return frame, reason

    async def read_body(self, length: int) -> memoryview:
        """The body of the answer just read, checked against its body tag (where the stream has them)."""
        received = memoryview(bytearray(self._sealer.body_span(length)))
        await self.stream.read(received)
        return self._sealer.checked_body(received, length)

    def done(self) -> None:
        """The exchange is complete: the connection may carry the next one."""
        self.clean = True


async def open_stream(addr: str, max_body: int, *, signer: PeerSigner | None = None,
                      ssl_context: ssl.SSLContext | None = None,
                      protocols: tuple[str, ...] = PROTOCOLS) -> ChunkConn:
    """A connection to the chunk stream at `addr` (the peer's HTTP listener), open and checked,
    speaking the first of `protocols` the peer serves.

    Raises NotServed (404), Refused (any other answer), FrameError (an answer that is no HTTP),
    Unauthenticated (an answer not signed for our opening), OSError (no connection)."""
    protocol = protocols[0]
    while True:
        try:
            return await _open(addr, max_body, protocol, signer, ssl_context)
        except _OtherVersion as exc:
            if exc.protocol not in protocols or exc.protocol == protocol:
                raise Refused(exc.line) from None
            protocol = exc.protocol


class _OtherVersion(Exception):
    """A 426: the peer speaks `protocol` instead; `open_stream` opens again with it if it may."""

    def __init__(self, protocol: str, line: str) -> None:
        super().__init__(line)
        self.protocol = protocol
        self.line = line


async def _open(addr: str, max_body: int, protocol: str, signer: PeerSigner | None,
                ssl_context: ssl.SSLContext | None) -> ChunkConn:
    host, port = split_hostport(addr)
    loop = asyncio.get_running_loop()
    _transport, stream = await loop.create_connection(
        FrameStream, host, port, ssl=ssl_context, server_hostname=PEER_TLS_NAME if ssl_context else None)
    try:
        credential = signer.sign(OPEN_PURPOSE, protocol.encode()) if signer is not None else None
        await stream.write(request_head(addr, credential, protocol))
        head = await _read_head(stream)
        if head.status == 404:
            raise NotServed(addr)
        if head.status == 426:
            line = f"HTTP {head.status} {head.reason}: {await _reason(stream, head)}".rstrip(": ")
            raise _OtherVersion(head.header("upgrade").strip().lower(), line)
        if head.status != 101:
            raise Refused(f"HTTP {head.status} {head.reason}: {await _reason(stream, head)}".rstrip(": "))
        if head.header("upgrade").strip().lower() != protocol:
            raise FrameError(f"the answer switched to {head.header('upgrade')[:40]!r}, not {protocol}")
        key = None
        if signer is not None and credential is not None:
            client_nonce = nonce_of(credential)
            server_nonce = signer.verify(ACCEPT_PURPOSE, client_nonce.encode(), head.header(AUTH_HEADER))
            key = session_key(signer, client_nonce, server_nonce, protocol)
        return ChunkConn(addr, stream, Sealer(key, client=True, body_tags=protocol != PROTOCOL_V1),
                         max_body)
    except BaseException:
        stream.abort()
        raise


async def _read_head(stream: FrameStream) -> ResponseHead:
    """The answer's head; what arrived past it goes back to the stream for the frames (or the reason)."""
    buf = bytearray()
    chunk = bytearray(_HEAD_READ_BYTES)
    while (end := buf.find(HEAD_END)) < 0:
        if len(buf) > MAX_HEAD_BYTES:
            raise FrameError(f"an answer head longer than {MAX_HEAD_BYTES} bytes")
        n = await stream.read(memoryview(chunk), at_least=1)
        buf += chunk[:n]
    end += len(HEAD_END)
    stream.unread(buf[end:])
    return parse_response_head(buf[:end])


async def _reason(stream: FrameStream, head: ResponseHead) -> str:
    """The refusal's text, if it is short and comes at once (it is only for the log line)."""
    length = min(head.content_length, MAX_REASON_BYTES)
    if not length:
        return ""
    body = bytearray(length)
    try:
        async with asyncio.timeout(1.0):
            await stream.read(memoryview(body))
    except (TimeoutError, ConnectionError):
        return ""
    return "".join(c if c.isprintable() else "?" for c in body.decode("utf-8", "replace"))[:MAX_REASON_CHARS]
