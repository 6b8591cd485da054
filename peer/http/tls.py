"""TLS contexts for the HTTP listener and the gossip client: mutual TLS, trust rooted in the cluster CA.

The server asks for a client certificate but does not demand one in the handshake (CERT_OPTIONAL),
so plain health checks reach /health; /gossip then refuses a connection that presented none. Any
certificate that *is* presented must verify against the CA, or the handshake fails. Clients verify
the server against the cluster-wide name PEER_TLS_NAME, since peers dial each other by IP address.
Every loader error (missing file, bad PEM, key not matching its certificate) becomes a one-line
ConfigError naming the file, so a misconfigured peer refuses to start with a clear message.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from peer.errors import ConfigError
from peer.security.certs import PEER_TLS_NAME

__all__ = ["PEER_TLS_NAME", "client_ssl_context", "server_only_ssl_context", "server_ssl_context"]

MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_2


def server_ssl_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """Serves `cert`/`key`; verifies any client certificate offered against `ca`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_TLS_VERSION
    _load_chain(ctx, cert, key)
    _load_ca(ctx, ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def server_only_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Serves `cert`/`key` and asks for no client certificate: for clients that prove who they are
    otherwise (the S3 API's signatures), as any HTTPS client can connect."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_TLS_VERSION
    _load_chain(ctx, cert, key)
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_ssl_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """Presents `cert`/`key`; requires a server certificate from `ca` naming the host dialled
    (pass server_hostname=PEER_TLS_NAME on each request)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    ctx.minimum_version = MIN_TLS_VERSION
    _load_chain(ctx, cert, key)
    _load_ca(ctx, ca)
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    _check_readable(cert, "TLS certificate")
    _check_readable(key, "TLS key")
    try:
        # A password callable keeps OpenSSL from prompting on the terminal for an encrypted key.
        ctx.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"TLS key {key} does not belong to the certificate {cert}") from exc
        if not _holds_certificate(cert):
            raise ConfigError(f"TLS certificate {cert}: not a PEM certificate ({exc.reason or exc})") from exc
        raise ConfigError(f"TLS key {key}: not an unencrypted PEM private key ({exc.reason or exc})") from exc
    except OSError as exc:
        raise ConfigError(f"cannot load the TLS certificate {cert} with key {key}: {exc.strerror or exc}") from exc


def _load_ca(ctx: ssl.SSLContext, ca: Path) -> None:
    _check_readable(ca, "TLS CA certificate")
    try:
        ctx.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise ConfigError(f"TLS CA certificate {ca}: not a PEM certificate ({exc.reason or exc})") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS CA certificate {ca}: {exc.strerror or exc}") from exc


def _check_readable(path: Path, what: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc


def _holds_certificate(path: Path) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError):
        return False
    return True


def _no_password() -> bytes:
    return b""
