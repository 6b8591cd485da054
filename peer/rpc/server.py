"""The peer's gRPC listeners: the client-facing server and, with TLS, a separate internal one for peers.

Clients cannot be asked for certificates, peers must be: with TLS there are two listeners and two
servers, so the chunk service is not even routable from the client port. Without TLS one server
carries both services and peers sign their calls instead. Every port is bound (and read back, for
port 0) before anything serves; a bind that fails is one ConfigError line naming the listener.

The client server also answers the standard gRPC health checks (`grpc.health.v1`: SERVING, or
NOT_SERVING while the metadata store is down, see `set_serving`) and server reflection, so grpcurl
and load balancers work against any peer; its calls are observed (peer.rpc.observe) before the auth
check runs.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from peer.config import PeerConfig, advertised, split_hostport
from peer.errors import ConfigError
from peer.metrics import PeerMetrics
from peer.rpc.auth import AuthInterceptor, ClientAuth
from peer.rpc.client_service import FileStoreServicer
from peer.rpc.client_service import add_to_server as add_file_store
from peer.rpc.observe import API, ObserveInterceptor
from peer.rpc.peer_client import server_options
from peer.rpc.peer_service import PeerChunksServicer
from peer.rpc.peer_service import add_to_server as add_peer_chunks
from peer.rpc.tls import TlsFiles
from peer.security.peerauth import PeerSigner
from proto import dfs_pb2 as pb

FILE_STORE_SERVICE = pb.DESCRIPTOR.services_by_name["FileStore"].full_name
# The asyncio health servicer; grpc-stubs predates it, hence Any.
AsyncHealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]


def client_limits(cfg: PeerConfig) -> list[tuple[str, int]]:
    """gRPC server options that bound what one client connection may hold."""
    return [
        ("grpc.max_concurrent_streams", cfg.max_streams_per_client),
        ("grpc.max_connection_idle_ms", int(cfg.connection_idle_timeout_s * 1000)),
    ]


@dataclass
class GrpcListeners:
    """Both gRPC servers, bound but not yet serving, and the addresses other peers should dial."""

    client: grpc.aio.Server
    internal: grpc.aio.Server
    """The peers' server: `client` itself without TLS."""
    grpc_addr: str
    """The advertised client address."""
    peer_addr: str
    """The advertised internal address; "" without TLS (peers use `grpc_addr`)."""
    health: Any = field(default_factory=lambda: AsyncHealthServicer())
    """The client server's grpc.health.v1 service: the whole server ("") and FileStore."""

    def serve(self, file_store: FileStoreServicer, peer_chunks: PeerChunksServicer) -> None:
        add_file_store(file_store, self.client)
        add_peer_chunks(peer_chunks, self.internal)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.client)
        reflection.enable_server_reflection(
            (FILE_STORE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), self.client
        )

    async def set_serving(self, serving: bool) -> None:
        """What health checks answer from now on: SERVING, or NOT_SERVING (the metadata store is down)."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", FILE_STORE_SERVICE):
            await self.health.set(service, status)

    async def start(self) -> None:
        await self.set_serving(True)
        if self.internal is not self.client:
            await self.internal.start()
        await self.client.start()

    async def stop(self, grace_s: float) -> None:
        """Clients first: their calls may still need peers while they drain. Health checks answer
        NOT_SERVING from the start of the drain, so load balancers stop sending new calls."""
        await self.health.enter_graceful_shutdown()
        await self.client.stop(grace_s)
        if self.internal is not self.client:
            await self.internal.stop(grace_s)


def bind_listeners(
    cfg: PeerConfig, tls: TlsFiles | None, signer: PeerSigner | None, auth: ClientAuth,
    metrics: PeerMetrics | None = None,
) -> GrpcListeners:
    """Builds the servers with their options and interceptors and binds their ports; `metrics` counts
    client calls and refusals."""

    def failures(reason: str) -> None:
        if metrics is not None:
            metrics.auth_failed(API, reason)

    client = grpc.aio.server(
        options=[*server_options(cfg.message_limit), *client_limits(cfg)],
        maximum_concurrent_rpcs=cfg.max_concurrent_rpcs,
        interceptors=[ObserveInterceptor(metrics, cfg.access_log), AuthInterceptor(auth, signer, failures)],
    )
    host, _ = split_hostport(cfg.grpc_addr)
    port = _listen(client, cfg.grpc_addr, "gRPC", tls.client_api_credentials() if tls else None)
    grpc_addr = advertised(f"{host}:{port}", cfg.advertise_grpc)
    if tls is None:
        return GrpcListeners(client, client, grpc_addr, "")
    # Mutual TLS authenticates peers here, so the interceptor checks no peer signature.
    internal = grpc.aio.server(options=server_options(cfg.message_limit),
                               interceptors=[AuthInterceptor(auth, None, failures)])
    internal_host, _ = split_hostport(cfg.internal_grpc_addr)
    internal_port = _listen(internal, cfg.internal_grpc_addr, "internal gRPC", tls.peer_server_credentials())
    return GrpcListeners(client, internal, grpc_addr, advertised(f"{internal_host}:{internal_port}",
                                                                 cfg.advertise_peer_grpc))


def _listen(server: grpc.aio.Server, addr: str, what: str, credentials: grpc.ServerCredentials | None) -> int:
    """Binds `addr` (TLS when `credentials`) and returns the port, or one clear ConfigError line."""
    _check_bindable(addr, what)
    try:
        if credentials is None:
            port = server.add_insecure_port(addr)
        else:
            port = server.add_secure_port(addr, credentials)
    except RuntimeError as exc:  # grpc reports a failed bind this way
        raise ConfigError(f"cannot listen for {what} on {addr}: address in use or not local") from exc
    if port == 0:
        raise ConfigError(f"cannot listen for {what} on {addr}")
    return port


def _check_bindable(addr: str, what: str) -> None:
    """Refuses a busy or foreign address with one clear line before grpc logs its own complaint."""
    host, port = split_hostport(addr)
    if port == 0:
        return
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)  # not create_server's own wording
        raise ConfigError(f"cannot listen for {what} on {addr}: {reason}") from exc
