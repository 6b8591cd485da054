"""aiohttp routes: POST /gossip feeds the Gossiper, GET /health reports the node's health callable.

Status mapping, done here and only here: oversize 413, GossipDecodeError 400, GossipMismatch 409.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web

from peer.errors import GossipDecodeError, GossipMismatch
from peer.membership.gossiper import Gossiper

log = logging.getLogger(__name__)

MSGPACK = "application/msgpack"
MAX_REASON_CHARS = 200

HealthFn = Callable[[], dict[str, Any]]


def build_app(gossiper: Gossiper, health: HealthFn, max_bytes: int) -> web.Application:
    async def gossip(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > max_bytes:
            # Refuse before reading: the declared size alone is enough.
            raise web.HTTPRequestEntityTooLarge(max_bytes, request.content_length)
        body = await request.read()  # raises 413 itself past client_max_size
        try:
            reply = await gossiper.handle(body)
        except GossipDecodeError as exc:
            log.debug("bad gossip from %s: %s", request.remote, exc)
            return web.Response(status=400, text=str(exc)[:MAX_REASON_CHARS])
        except GossipMismatch as exc:
            return web.Response(status=409, text=str(exc)[:MAX_REASON_CHARS])
        return web.Response(body=reply, content_type=MSGPACK)

    async def health_route(request: web.Request) -> web.Response:
        report = health()
        return web.json_response(report, status=200 if report.get("status") == "ok" else 503)

    app = web.Application(client_max_size=max_bytes)
    app.router.add_post("/gossip", gossip)
    app.router.add_get("/health", health_route)
    return app


async def start_http(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serves `app` on host:port and returns the runner (call `cleanup()` to stop) and the bound port.

    The socket is bound here, without SO_REUSEPORT, so port 0 yields a port no other listener shares.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    runner = web.AppRunner(app, access_log=None)  # one line per gossip round would drown the log
    await runner.setup()
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError:
        await runner.cleanup()
        raise
    try:
        await web.SockSite(runner, sock).start()
    except BaseException:
        sock.close()
        await runner.cleanup()
        raise
    return runner, sock.getsockname()[1]
