"""POST /gossip: feeds a push to the Gossiper and answers with its reply.

Only peers may gossip. With mTLS on, a middleware of this app refuses a connection without a
verified client certificate (403) before the body is read; with a cluster secret, the body must
carry a valid `X-Dfs-Peer-Auth` credential (401) and the reply is signed over the request's nonce
and the reply body, so neither a push nor a reply can be forged or replayed. Both checks run
before the body reaches the Gossiper; neither applies to the other apps of the listener.

Status mapping, done here and only here: no client cert 403, slow body 408, oversize 413,
Unauthenticated 401, GossipDecodeError 400, GossipMismatch 409.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from peer.errors import GossipDecodeError, GossipMismatch, Unauthenticated
from peer.http.gossip_wire import (
    AUTH_HEADER,
    GOSSIP_PATH,
    MAX_REASON_CHARS,
    MSGPACK,
    PUSH_PURPOSE,
    REPLY_PURPOSE,
    reply_payload,
)
from peer.http.server import Mount
from peer.membership.gossiper import Gossiper
from peer.security.peerauth import PeerSigner

__all__ = ["DEFAULT_BODY_TIMEOUT_S", "RefusalLog", "gossip_app"]

log = logging.getLogger(__name__)

DEFAULT_BODY_TIMEOUT_S = 10.0
REFUSAL_WARN_INTERVAL_S = 60.0
READ_CHUNK_BYTES = 64 * 1024


class RefusalLog:
    """Logs refused gossip (or, naming it `what`, another peer endpoint's refusals) without letting a
    flood of forgeries flood the log: at most one warning per `interval_s` (carrying the count of
    refusals since), every other refusal at debug."""

    def __init__(self, interval_s: float = REFUSAL_WARN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic, *, what: str = "gossip") -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._what = what
        self._next_warning = float("-inf")
        self._suppressed = 0

    def refused(self, status: int, remote: str | None, reason: str) -> None:
        now = self._clock()
        if now < self._next_warning:
            self._suppressed += 1
            log.debug("refused %s from %s: %d %s", self._what, remote, status, reason)
            return
        log.warning("refused %s from %s: %d %s (%d more refused since the last warning)",
                    self._what, remote, status, reason, self._suppressed)
        self._suppressed = 0
        self._next_warning = now + self._interval_s


def gossip_app(
    gossiper: Gossiper,
    max_bytes: int,
    *,
    signer: PeerSigner | None = None,
    require_peer_cert: bool = False,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
) -> Mount:
    """`signer` demands a valid credential on every push and signs every reply; `require_peer_cert`
    demands a verified client certificate (serve with a `tls.server_ssl_context`). With neither,
    any client may gossip: only for a trusted network. Bodies past `max_bytes` get 413."""
    refusals = RefusalLog()

    def refuse(request: web.Request, status: int, reason: str) -> web.Response:
        refusals.refused(status, request.remote, reason)
        headers = {"WWW-Authenticate": AUTH_HEADER} if status == 401 else None
        return web.Response(status=status, text=reason[:MAX_REASON_CHARS], headers=headers)

    @web.middleware
    async def peers_only(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _has_peer_cert(request):
            return refuse(request, 403, "a peer certificate is required")
        return await handler(request)

    async def gossip(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > max_bytes:
            # Refuse before reading: the declared size alone is enough.
            raise web.HTTPRequestEntityTooLarge(max_bytes, request.content_length)
        try:
            async with asyncio.timeout(body_timeout_s):
                body = await _read_body(request, max_bytes)
        except TimeoutError:
            refusals.refused(408, request.remote, f"body not received within {body_timeout_s} s")
            return await _drop_with_408(request)
        nonce = ""
        if signer is not None:
            try:
                nonce = signer.verify(PUSH_PURPOSE, body, request.headers.get(AUTH_HEADER))
            except Unauthenticated as exc:
                return refuse(request, 401, str(exc))
        try:
            reply = await gossiper.handle(body)
        except GossipDecodeError as exc:
            log.debug("bad gossip from %s: %s", request.remote, exc)
            return web.Response(status=400, text=str(exc)[:MAX_REASON_CHARS])
        except GossipMismatch as exc:
            return web.Response(status=409, text=str(exc)[:MAX_REASON_CHARS])
        headers = None
        if signer is not None:
            headers = {AUTH_HEADER: signer.sign(REPLY_PURPOSE, reply_payload(nonce, reply))}
        return web.Response(body=reply, content_type=MSGPACK, headers=headers)

    app = web.Application(middlewares=[peers_only] if require_peer_cert else [])
    app.router.add_post("", gossip)
    return Mount(GOSSIP_PATH, app)


async def _read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, or 413 as soon as it runs past `max_bytes` (a chunked body declares no size)."""
    body = bytearray()
    async for chunk in request.content.iter_chunked(READ_CHUNK_BYTES):
        body += chunk
        if len(body) > max_bytes:
            raise web.HTTPRequestEntityTooLarge(max_bytes, len(body))
    return bytes(body)


def _has_peer_cert(request: web.Request) -> bool:
    # The server context verifies any certificate offered against the cluster CA during the
    # handshake (CERT_OPTIONAL), so a non-empty peercert here is one the CA signed.
    transport = request.transport
    return transport is not None and bool(transport.get_extra_info("peercert"))


async def _drop_with_408(request: web.Request) -> web.StreamResponse:
    """Answers 408 and closes the connection at once: without this, aiohttp would keep reading
    (lingering) what is left of the body, which a stalling client never sends."""
    resp = web.Response(status=408, text="request body timed out")
    resp.force_close()
    await resp.prepare(request)
    await resp.write_eof()
    request.protocol.force_close()
    return resp
