"""`dfs-peer health`: the container health check, asking this peer's GET /health.

It reads the same DFS_GOSSIP_ADDR and DFS_TLS_CA as `serve`, so inside a container it needs no
arguments: the image's HEALTHCHECK and the compose healthcheck are just `dfs-peer health`. A wildcard
bind host (0.0.0.0, ::, empty) is reached through loopback. With a CA the request is HTTPS and the
peer's certificate must be signed by that CA and carry the cluster-wide name PEER_TLS_NAME, the name
peers verify each other by (so any certificate that works between peers passes here too, wherever
it was made). No client certificate is presented: /health does not ask for one.

Exit 0 on HTTP 200; anything else (503 while the metadata store is unreachable, no answer, a TLS
failure, a bad address, even bad arguments) exits 1 with one line on stderr, never a traceback.
The request itself is standard library only (http.client and ssl, what urllib uses underneath), so
the check stays cheap when Docker runs it every few seconds.
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys

import click

from peer.config import WILDCARD_HOSTS, split_hostport
from peer.errors import DfsError
from peer.security.certs import PEER_TLS_NAME

__all__ = ["check_health", "health_command", "Unhealthy"]

EXIT_UNHEALTHY = 1
# Enough of a /health body for its status and error; a larger answer is not a peer's.
MAX_BODY_BYTES = 64 * 1024
MAX_DETAIL_CHARS = 200


class Unhealthy(Exception):
    """The peer did not answer 200 on /health; the message says what happened instead."""


class _PeerTLSConnection(http.client.HTTPConnection):
    """HTTPS that verifies the server against PEER_TLS_NAME, not the address dialled: http.client
    and urllib always check the URL's host, which a certificate made in advance may not carry."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout)
        self._context = context

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=PEER_TLS_NAME)


def probe_host(gossip_addr: str) -> tuple[str, int]:
    """The host and port to ask for a listener bound to `gossip_addr` (wildcards become loopback)."""
    if gossip_addr.startswith(":"):  # ":7946", no host at all: a wildcard too
        gossip_addr = "0.0.0.0" + gossip_addr
    host, port = split_hostport(gossip_addr, "DFS_GOSSIP_ADDR")
    if host in WILDCARD_HOSTS:
        host = "::1" if host == "::" else "127.0.0.1"
    if port == 0:
        raise Unhealthy(f"DFS_GOSSIP_ADDR {gossip_addr!r} has port 0: the real port is in DATA_DIR/ready.json")
    return host, port


def check_health(gossip_addr: str, tls_ca: str = "", timeout_s: float = 3.0) -> dict[str, object]:
    """GET /health of the peer listening on `gossip_addr`; returns its report or raises Unhealthy."""
    try:
        host, port = probe_host(gossip_addr)
    except DfsError as exc:
        raise Unhealthy(str(exc)) from exc
    scheme = "https" if tls_ca else "http"
    url = f"{scheme}://[{host}]:{port}/health" if ":" in host else f"{scheme}://{host}:{port}/health"
    conn = _connection(host, port, tls_ca, timeout_s)
    try:
        conn.request("GET", "/health", headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read(MAX_BODY_BYTES)
    except ssl.SSLError as exc:
        reason = getattr(exc, "verify_message", None) or exc.reason or exc
        raise Unhealthy(f"{url}: TLS handshake failed: {reason}") from exc
    except TimeoutError as exc:
        raise Unhealthy(f"{url}: no answer within {timeout_s:g} s") from exc
    except http.client.RemoteDisconnected as exc:
        hint = "" if tls_ca else " (a peer with TLS needs DFS_TLS_CA or --tls-ca)"
        raise Unhealthy(f"{url}: closed without an answer{hint}") from exc
    except OSError as exc:
        raise Unhealthy(f"{url}: {exc.strerror or exc}") from exc
    except http.client.HTTPException as exc:
        raise Unhealthy(f"{url}: not an HTTP answer ({type(exc).__name__})") from exc
    finally:
        conn.close()
    report = _report(body)
    if resp.status != 200:
        raise Unhealthy(f"{url}: HTTP {resp.status} {_describe(report, body)}".rstrip())
    return report


def _connection(host: str, port: int, tls_ca: str, timeout_s: float) -> http.client.HTTPConnection:
    if not tls_ca:
        return http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        context = ssl.create_default_context(cafile=tls_ca)  # CERT_REQUIRED, hostname checked
    except ssl.SSLError as exc:
        raise Unhealthy(f"TLS CA certificate {tls_ca}: not a PEM certificate ({exc.reason or exc})") from exc
    except OSError as exc:
        raise Unhealthy(f"cannot read the TLS CA certificate {tls_ca}: {exc.strerror or exc}") from exc
    return _PeerTLSConnection(host, port, timeout_s, context)


def _report(body: bytes) -> dict[str, object]:
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _describe(report: dict[str, object], body: bytes) -> str:
    """One line: the peer's own status and error when it sent JSON, else the start of the body."""
    if report:
        parts = [str(report.get("status", ""))]
        if report.get("metadata_error"):
            parts.append(f"(metadata store: {report['metadata_error']})")
        text = " ".join(p for p in parts if p)
    else:
        text = body.decode("utf-8", "replace")
    return " ".join(text.split())[:MAX_DETAIL_CHARS]


class _HealthCommand(click.Command):
    """Bad arguments exit 1 like any other failure: Docker reserves health-check exit code 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            click.echo(f"dfs-peer: unhealthy: {exc.format_message()}", err=True)
            ctx.exit(EXIT_UNHEALTHY)


@click.command("health", cls=_HealthCommand)
@click.option("--gossip-addr", envvar="DFS_GOSSIP_ADDR", default="127.0.0.1:7946", show_default=True,
              help="The peer's gossip/health listen HOST:PORT; 0.0.0.0, :: or no host mean loopback.")
@click.option("--tls-ca", envvar="DFS_TLS_CA", default="",
              help="Cluster CA (PEM): ask over HTTPS and verify the peer's certificate against it.")
@click.option("--timeout", "timeout_s", default=3.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds to wait for the answer.")
def health_command(gossip_addr: str, tls_ca: str, timeout_s: float) -> None:
    """Exit 0 if this peer's GET /health answers 200, else 1 with the reason (container health checks)."""
    try:
        check_health(gossip_addr, tls_ca, timeout_s)
    except Unhealthy as exc:
        click.echo(f"dfs-peer: unhealthy: {exc}", err=True)
        sys.exit(EXIT_UNHEALTHY)
