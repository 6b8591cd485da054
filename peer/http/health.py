"""GET /health: the node's health document as JSON, 200 when its status is "ok", else 503.

Open to anyone, also with mutual TLS on (the listener asks for a client certificate but does not
demand one), so plain container and load-balancer health checks can reach it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from peer.http.server import Mount

__all__ = ["HEALTH_PATH", "HealthFn", "health_app"]

HEALTH_PATH = "/health"

HealthFn = Callable[[], dict[str, Any]]


def health_app(health: HealthFn) -> Mount:
    """Answers with exactly the document `health` returns, nothing added."""

    async def report(request: web.Request) -> web.Response:
        doc = health()
        return web.json_response(doc, status=200 if doc.get("status") == "ok" else 503)

    app = web.Application()
    app.router.add_get("", report)
    return Mount(HEALTH_PATH, app)
