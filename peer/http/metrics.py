"""GET /metrics: the peer's registry in the Prometheus text format, for a token or an allowed address.

The app shares the gossip listener and its TLS, but not gossip's demand for a peer certificate: a
Prometheus server is no peer. Who may read it: a caller from an address in DFS_METRICS_ALLOW (by
default the loopback addresses: a scraper beside the peer), or any caller with a valid client token
of any role (`Authorization: Bearer …`, which Prometheus sends with `authorization: credentials_file`).
With client authentication off (`--no-auth`), anyone. The numbers reveal no file names or contents,
but they do show load, sizes and members, which is why they are not simply open. A peer started with
--no-metrics mounts `metrics_off_app` instead, which answers 404 to everyone.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence

from aiohttp import web

from peer.errors import DfsError, Unauthenticated
from peer.http.server import Mount
from peer.security.tokens import TokenVerifier

__all__ = ["METRICS_OFF", "METRICS_PATH", "Networks", "allowed", "metrics_app", "metrics_off_app"]

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
API = "metrics"
METRICS_OFF = "metrics are off on this peer (--no-metrics, DFS_METRICS)\n"

Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
Render = Callable[[], tuple[bytes, str]]
"""The exposition body and its content type."""


def allowed(remote: str | None, networks: Networks) -> bool:
    """Whether the address `remote` lies in one of `networks` (an IPv4-mapped IPv6 address counts as
    its IPv4 address, as a dual-stack listener reports IPv4 callers)."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)


def metrics_app(
    render: Render,
    networks: Networks,
    verifier: TokenVerifier | None,
    failures: Callable[[str, str], None] | None = None,
) -> Mount:
    """`verifier` None (client authentication off) opens the endpoint to anyone; `failures(api,
    reason)` is told of each refusal."""

    def refuse(request: web.Request, status: int, reason: str, text: str) -> web.Response:
        if failures is not None:
            failures(API, reason)
        log.debug("refused GET /metrics from %s: %s", request.remote, text)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return web.Response(status=status, text=text, headers=headers)

    async def scrape(request: web.Request) -> web.Response:
        if verifier is not None and not allowed(request.remote, networks):
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return refuse(request, 401, "no_token", "a client token (Authorization: Bearer) is required")
            try:
                await verifier.verify(token.strip())
            except Unauthenticated:
                return refuse(request, 401, "bad_token", "invalid or revoked token")
            except DfsError as exc:  # the metadata store cannot check tokens now
                return web.Response(status=503, text=str(exc))
        body, content_type = render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("", scrape)
    return Mount(METRICS_PATH, app)


def metrics_off_app() -> Mount:
    """/metrics of a peer started with --no-metrics: 404 with a line that says why, so a scraper's
    owner sees a switched-off peer rather than a wrong path or port. Nothing is counted to serve."""

    async def off(_request: web.Request) -> web.Response:
        return web.Response(status=404, text=METRICS_OFF)

    app = web.Application()
    app.router.add_get("", off)
    return Mount(METRICS_PATH, app)
