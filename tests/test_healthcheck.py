"""`dfs-peer health`, the container health check: exit 0 on HTTP 200 from /health, else 1 and one line.

Small stand-in servers on 127.0.0.1 port 0 answer 200 or 503 over HTTP and over HTTPS with a peer
certificate from `init_certs` (served with the peer's own gossip TLS context), plus one real
`dfs-peer serve` process with TLS, checked the way Docker does: a subprocess reading the environment.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from peer.cli import main
from peer.cli_health import check_health, probe_host
from peer.http.tls import server_ssl_context
from peer.security.certs import init_certs
from tests.cluster import PeerProc

# The variables `dfs-peer health` reads; cleared so the developer's shell cannot leak in.
HEALTH_ENV: dict[str, str | None] = {"DFS_GOSSIP_ADDR": None, "DFS_TLS_CA": None}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    init_certs(directory, 1)
    return directory


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA of another cluster: it signed nothing the servers here present."""
    directory = tmp_path_factory.mktemp("other")
    init_certs(directory, 1)
    return directory / "ca.crt"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    status = 200
    body: dict[str, Any] = {"status": "ok"}
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        if self.tls is not None:  # handshake in the handler's thread, so a stalled client blocks nobody
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client speaking plain HTTP to TLS fails the handshake: expected here


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps(self.server.body).encode() if self.path == "/health" else b"not found"
        self.send_response(self.server.status if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def health_server(
    status: int = 200, body: dict[str, Any] | None = None, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> Iterator[int]:
    """A /health stand-in on `host`, port 0; yields the bound port."""
    server_cls = type("Server", (_Server,), {
        "status": status, "body": body or {"status": "ok" if status == 200 else "degraded"}, "tls": tls,
        "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET,
    })
    server = server_cls((host, 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def tls_server(certs: Path) -> Callable[..., Any]:
    """health_server over HTTPS with peer-1's certificate, served as the peer's gossip listener serves."""
    context = server_ssl_context(certs / "peer-1.crt", certs / "peer-1.key", certs / "ca.crt")
    return lambda status=200, body=None: health_server(status, body, tls=context)


def health(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["health", *args], env={**HEALTH_ENV, **(env or {})})


def assert_unhealthy(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dfs-peer: unhealthy: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# -- plain HTTP ------------------------------------------------------------------------------------


def test_200_is_healthy() -> None:
    with health_server(200) as port:
        result = health("--gossip-addr", f"127.0.0.1:{port}")

    assert result.exit_code == 0, result.output
    assert result.output == ""


def test_503_is_unhealthy_with_the_peers_reason() -> None:
    report = {"status": "degraded", "node_id": "n1", "metadata_error": "mongodb:27017: connection refused"}
    with health_server(503, report) as port:
        result = health("--gossip-addr", f"127.0.0.1:{port}")

    assert_unhealthy(result, f"127.0.0.1:{port}/health", "HTTP 503", "degraded", "mongodb:27017: connection refused")


def test_any_other_status_is_unhealthy() -> None:
    with health_server(500, {"oops": True}) as port:
        assert_unhealthy(health("--gossip-addr", f"127.0.0.1:{port}"), "HTTP 500")


def test_nothing_listening_is_unhealthy() -> None:
    with health_server(200) as port:
        pass  # bound, then closed: nothing listens on this port any more

    assert_unhealthy(health("--gossip-addr", f"127.0.0.1:{port}"), f"127.0.0.1:{port}")


def test_a_peer_that_does_not_answer_is_unhealthy_within_the_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        port = silent.getsockname()[1]
        started = time.monotonic()
        result = health("--gossip-addr", f"127.0.0.1:{port}", "--timeout", "0.3")
        elapsed = time.monotonic() - started

    assert_unhealthy(result, "no answer within 0.3 s")
    assert elapsed < 3


def test_reads_the_address_from_the_environment_and_maps_a_wildcard_host_to_loopback() -> None:
    with health_server(200) as port:
        result = health(env={"DFS_GOSSIP_ADDR": f"0.0.0.0:{port}"})

    assert result.exit_code == 0, result.output


def test_ipv6_wildcard_host_means_ipv6_loopback() -> None:
    try:
        server = health_server(200, host="::1")
        port = server.__enter__()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        result = health("--gossip-addr", f"[::]:{port}")
    finally:
        server.__exit__(None, None, None)

    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("addr", "expected"),
    [("0.0.0.0:7946", ("127.0.0.1", 7946)), (":7946", ("127.0.0.1", 7946)), ("[::]:7946", ("::1", 7946)),
     ("10.0.0.5:8000", ("10.0.0.5", 8000)), ("[fd00::5]:1", ("fd00::5", 1))],
)
def test_probe_host(addr: str, expected: tuple[str, int]) -> None:
    assert probe_host(addr) == expected


@pytest.mark.parametrize("args", [["--gossip-addr", "no-port"], ["--gossip-addr", "127.0.0.1:0"],
                                  ["--timeout", "soon"], ["--timeout", "0"], ["--no-such-flag"]])
def test_bad_arguments_exit_1_with_one_line(args: list[str]) -> None:
    """Docker reserves exit code 2 of a health check, so even usage errors exit 1."""
    assert_unhealthy(health(*args))


def test_health_is_a_dfs_peer_command() -> None:
    result = CliRunner().invoke(main, ["--help"])

    assert result.exit_code == 0 and "health" in result.output


# -- HTTPS with the cluster CA ---------------------------------------------------------------------


def test_tls_200_verified_against_the_ca_is_healthy(tls_server: Callable[..., Any], certs: Path) -> None:
    with tls_server(200) as port:
        result = health("--gossip-addr", f"127.0.0.1:{port}", "--tls-ca", str(certs / "ca.crt"))

    assert result.exit_code == 0, result.output


def test_tls_settings_come_from_the_environment(tls_server: Callable[..., Any], certs: Path) -> None:
    with tls_server(200) as port:
        result = health(env={"DFS_GOSSIP_ADDR": f"0.0.0.0:{port}", "DFS_TLS_CA": str(certs / "ca.crt")})

    assert result.exit_code == 0, result.output


def test_tls_503_is_unhealthy(tls_server: Callable[..., Any], certs: Path) -> None:
    with tls_server(503) as port:
        result = health("--gossip-addr", f"127.0.0.1:{port}", "--tls-ca", str(certs / "ca.crt"))

    assert_unhealthy(result, f"https://127.0.0.1:{port}/health", "HTTP 503")


def test_a_certificate_from_another_ca_is_unhealthy(tls_server: Callable[..., Any], other_ca: Path) -> None:
    with tls_server(200) as port:
        result = health("--gossip-addr", f"127.0.0.1:{port}", "--tls-ca", str(other_ca))

    assert_unhealthy(result, "TLS handshake failed", "certificate")


def test_plain_http_to_a_tls_peer_is_unhealthy_with_a_hint(tls_server: Callable[..., Any]) -> None:
    with tls_server(200) as port:
        result = health("--gossip-addr", f"127.0.0.1:{port}")

    assert_unhealthy(result, "DFS_TLS_CA")


def test_https_to_a_plain_peer_is_unhealthy(certs: Path) -> None:
    with health_server(200) as port:
        result = health("--gossip-addr", f"127.0.0.1:{port}", "--tls-ca", str(certs / "ca.crt"))

    assert_unhealthy(result, "TLS handshake failed")


@pytest.mark.parametrize("name", ["missing.crt", "peer-1.key"])
def test_an_unusable_ca_file_is_unhealthy(certs: Path, name: str) -> None:
    assert_unhealthy(health("--tls-ca", str(certs / name)), "TLS CA certificate", name)


def test_check_health_returns_the_report(tls_server: Callable[..., Any], certs: Path) -> None:
    with tls_server(200, {"status": "ok", "node_id": "abc"}) as port:
        report = check_health(f"127.0.0.1:{port}", str(certs / "ca.crt"), 3.0)

    assert report == {"status": "ok", "node_id": "abc"}


# -- a real peer -----------------------------------------------------------------------------------


@pytest.fixture
def tls_peer(tmp_path: Path, certs: Path) -> Iterator[PeerProc]:
    tls = ["--tls-cert", str(certs / "peer-1.crt"), "--tls-key", str(certs / "peer-1.key"),
           "--tls-ca", str(certs / "ca.crt")]
    peer = PeerProc(tmp_path, 1, f"sqlite:///{tmp_path / 'metadata.db'}", 1, tls)
    try:
        yield peer.start()
    finally:
        peer.kill()


def run_health(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """As Docker runs the check: a fresh process configured by the container's environment."""
    base = {k: v for k, v in os.environ.items() if k not in HEALTH_ENV}
    return subprocess.run([sys.executable, "-m", "peer", "health"], env={**base, **env},
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_a_real_tls_peer_is_healthy_until_it_stops(tls_peer: PeerProc, certs: Path) -> None:
    env = {"DFS_GOSSIP_ADDR": tls_peer.gossip_addr, "DFS_TLS_CA": str(certs / "ca.crt")}

    ok = run_health(env)
    assert ok.returncode == 0, ok.stderr + tls_peer.tail()

    plain = run_health({"DFS_GOSSIP_ADDR": tls_peer.gossip_addr})
    assert plain.returncode == 1 and plain.stderr.startswith("dfs-peer: unhealthy: "), plain.stderr

    tls_peer.kill()
    gone = run_health(env)
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1, gone.stderr
    assert "Traceback" not in gone.stderr
