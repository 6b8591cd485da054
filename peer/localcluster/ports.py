"""The local cluster's port scheme: one base port P fixes every listener of every peer.

Listener kind j of peer k (k counts from 1) listens on P + 64*j + (k - 1). Each kind owns a block of 64
ports, so no two peers' listeners collide for any cluster of up to 64 peers:

    gRPC (clients)          P + k - 1           50051-50114 with the default P = 50051
    gossip / health HTTP    P + 64 + k - 1      50115-50178
    internal gRPC (TLS)     P + 128 + k - 1     50179-50242
    S3 API (HTTP)           P + 192 + k - 1     50243-50306
    console HTTP (reserved) P + 256 + k - 1     50307-50370
"""

from __future__ import annotations

from dataclasses import dataclass

from peer.errors import ConfigError

MAX_PEERS = 64
DEFAULT_BASE_PORT = 50051
LISTENERS = ("grpc", "gossip", "internal", "s3", "console")
HOST = "127.0.0.1"


@dataclass(frozen=True)
class PortScheme:
    base: int

    def __post_init__(self) -> None:
        top = self.base + MAX_PEERS * len(LISTENERS) - 1
        if not 1 <= self.base or top > 65535:
            raise ConfigError(
                f"--base-port {self.base} is out of range: the scheme uses ports up to base + "
                f"{MAX_PEERS * len(LISTENERS) - 1}, which must stay within 1-65535"
            )

    def port(self, listener: str, peer: int) -> int:
        if not 1 <= peer <= MAX_PEERS:
            raise ConfigError(f"peer {peer} is out of range: peers count from 1 to {MAX_PEERS}")
        return self.base + MAX_PEERS * LISTENERS.index(listener) + peer - 1

    def addr(self, listener: str, peer: int) -> str:
        return f"{HOST}:{self.port(listener, peer)}"
