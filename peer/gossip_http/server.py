"""aiohttp routes: POST /gossip feeds the Gossiper, GET /health reports the node's health callable.

Only peers may gossip. With mTLS on, /gossip refuses a connection without a verified client
certificate (403) before reading the body; with a cluster secret, the body must carry a valid
`X-Dfs-Peer-Auth` credential (401) and the reply is signed over the request's nonce and the reply
body, so neither a push nor a reply can be forged or replayed. Both checks run before the body
reaches the Gossiper. /health stays open, for plain health checks.

Status mapping, done here and only here: no client cert 403, slow body 408, oversize 413,
Unauthenticated 401, GossipDecodeError 400, GossipMismatch 409.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from peer.errors import GossipDecodeError, GossipMismatch, Unauthenticated
from peer.membership.gossiper import Gossiper
from peer.security.peerauth import PeerSigner

log = logging.getLogger(__name__)

MSGPACK = "application/msgpack"
MAX_REASON_CHARS = 200
AUTH_HEADER = "X-Dfs-Peer-Auth"
PUSH_PURPOSE = "gossip"
REPLY_PURPOSE = "gossip-reply"
DEFAULT_BODY_TIMEOUT_S = 10.0
# aiohttp's own default is an hour; an idle keep-alive connection costs a socket and a task.
DEFAULT_IDLE_TIMEOUT_S = 75.0
REFUSAL_WARN_INTERVAL_S = 60.0

HealthFn = Callable[[], dict[str, Any]]


def reply_payload(request_nonce: str, reply: bytes) -> bytes:
    """What a reply's credential covers: binding the request's nonce makes a reply valid for that
    one request only, so a captured reply cannot answer another push."""
    return request_nonce.encode("ascii") + reply


class RefusalLog:
    """Logs refused gossip without letting a flood of forgeries flood the log: at most one warning
    per `interval_s` (carrying the count of refusals since), every other refusal at debug."""

    def __init__(self, interval_s: float = REFUSAL_WARN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._next_warning = float("-inf")
        self._suppressed = 0

    def refused(self, status: int, remote: str | None, reason: str) -> None:
        now = self._clock()
        if now < self._next_warning:
            self._suppressed += 1
            log.debug("refused gossip from %s: %d %s", remote, status, reason)
            return
        log.warning("refused gossip from %s: %d %s (%d more refused since the last warning)",
                    remote, status, reason, self._suppressed)
        self._suppressed = 0
        self._next_warning = now + self._interval_s


def build_app(
    gossiper: Gossiper,
    health: HealthFn,
    max_bytes: int,
    *,
    signer: PeerSigner | None = None,
    require_peer_cert: bool = False,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
) -> web.Application:
    """`signer` demands a valid credential on every push and signs every reply; `require_peer_cert`
    demands a verified client certificate (serve with a `tls.server_ssl_context`). With neither,
    any client may gossip: only for a trusted network."""
    refusals = RefusalLog()

    def refuse(request: web.Request, status: int, reason: str) -> web.Response:
        refusals.refused(status, request.remote, reason)
        headers = {"WWW-Authenticate": AUTH_HEADER} if status == 401 else None
        return web.Response(status=status, text=reason[:MAX_REASON_CHARS], headers=headers)

    async def gossip(request: web.Request) -> web.StreamResponse:
        if require_peer_cert and not _has_peer_cert(request):
            return refuse(request, 403, "a peer certificate is required")
        if request.content_length is not None and request.content_length > max_bytes:
            # Refuse before reading: the declared size alone is enough.
            raise web.HTTPRequestEntityTooLarge(max_bytes, request.content_length)
        try:
            async with asyncio.timeout(body_timeout_s):
                body = await request.read()  # raises 413 itself past client_max_size
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

    async def health_route(request: web.Request) -> web.Response:
        report = health()
        return web.json_response(report, status=200 if report.get("status") == "ok" else 503)

    app = web.Application(client_max_size=max_bytes)
    app.router.add_post("/gossip", gossip)
    app.router.add_get("/health", health_route)
    return app


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


async def start_http(
    app: web.Application,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    *,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
) -> tuple[web.AppRunner, int]:
    """Serves `app` on host:port (over TLS with `ssl_context`) and returns the runner (call
    `cleanup()` to stop) and the bound port. Connections idle for `idle_timeout_s` are closed.

    The socket is bound here, without SO_REUSEPORT, so port 0 yields a port no other listener shares.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # No access log: one line per gossip round would drown the log.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=idle_timeout_s)
    await runner.setup()
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError:
        await runner.cleanup()
        raise
    try:
        await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    except BaseException:
        sock.close()
        await runner.cleanup()
        raise
    return runner, sock.getsockname()[1]
