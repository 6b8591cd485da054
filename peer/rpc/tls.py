"""gRPC credentials from the PEM files of DFS_TLS_CERT, DFS_TLS_KEY and DFS_TLS_CA.

Clients get server-side TLS (they verify the peer, the peer does not ask them for a certificate).
The internal listener demands a client certificate signed by the cluster CA. Peers dial each other
by IP, which no certificate can name in advance, so they verify the name every peer certificate
carries (PEER_TLS_NAME) instead: what proves a peer is the cluster CA's signature.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from peer.errors import ConfigError
from peer.security.certs import PEER_TLS_NAME


@dataclass(frozen=True)
class TlsFiles:
    cert: bytes
    key: bytes
    ca: bytes

    @classmethod
    def load(cls, cert: str, key: str, ca: str) -> TlsFiles:
        """Reads and checks the files now, so a mismatched pair fails at start with one line rather
        than at the first handshake."""
        files = cls(_read(cert, "DFS_TLS_CERT"), _read(key, "DFS_TLS_KEY"), _read(ca, "DFS_TLS_CA"))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise ConfigError(f"DFS_TLS_CERT {cert} and DFS_TLS_KEY {key} do not form a usable pair: "
                              f"{exc.reason or exc}") from exc
        try:
            context.load_verify_locations(ca)
        except ssl.SSLError as exc:
            raise ConfigError(f"DFS_TLS_CA {ca} holds no usable CA certificate: {exc.reason or exc}") from exc
        return files

    def client_api_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key, self.cert)])

    def peer_server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca,
                                           require_client_auth=True)

    def peer_channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)


PEER_CHANNEL_OPTIONS = [("grpc.ssl_target_name_override", PEER_TLS_NAME)]


def _read(path: str, setting: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{setting}: {path} is not a PEM file")
    return data
