"""The composition root: builds every component of one peer, runs them, and stops them in order.

Start: identity -> chunk store -> metadata -> gRPC and gossip listeners (ports read back) ->
membership -> ring -> ready.json. Stop (SIGTERM/SIGINT): announce LEAVE to the cluster, stop the
gRPC server with a grace period, drain background tasks, close stores. Every long-lived task belongs
to one TaskGroup and watches one stop Event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from peer.clock import Clock, SystemClock
from peer.config import MIB, PeerConfig, advertised, split_hostport
from peer.errors import ConfigError, DfsError, MetadataUnavailable
from peer.gossip_http.client import HttpGossipTransport, resolve_seeds
from peer.gossip_http.server import build_app, start_http
from peer.gossip_http.tls import client_ssl_context, server_ssl_context
from peer.identity import Identity, load_identity
from peer.membership.gossiper import Gossiper
from peer.membership.state import MembershipView, MemberState
from peer.metadata.open import open_store
from peer.metadata.store import AsyncMetadata, MetadataStore
from peer.repair.antientropy import AntiEntropy
from peer.repair.gc import GarbageCollector
from peer.repair.scrub import Scrubber
from peer.repair.stats import RepairStats
from peer.repair.worker import Worker, run_worker
from peer.ring.hashring import HashRing
from peer.ring.placement import ring_members
from peer.rpc.auth import AuthInterceptor, ClientAuth
from peer.rpc.client_service import ClientLimits, FileStoreServicer
from peer.rpc.client_service import add_to_server as add_file_store
from peer.rpc.peer_client import GrpcChunkPeers, server_options
from peer.rpc.peer_service import PeerChunksServicer
from peer.rpc.peer_service import add_to_server as add_peer_chunks
from peer.rpc.tls import TlsFiles
from peer.security.peerauth import PeerSigner
from peer.security.tokens import TokenVerifier
from peer.status import StatusReporter, stats_dict
from peer.storage.chunkstore import ChunkStore, write_durable
from peer.transfer.budget import ByteBudget
from peer.transfer.download import DownloadService
from peer.transfer.upload import UploadService

log = logging.getLogger(__name__)

IO_THREADS = 16
LEAVE_TIMEOUT_S = 2.0
STOP_GRACE_S = 5.0
METADATA_PING_S = 2.0


def client_limits(cfg: PeerConfig) -> list[tuple[str, int]]:
    """gRPC server options that bound what one client connection may hold."""
    return [
        ("grpc.max_concurrent_streams", cfg.max_streams_per_client),
        ("grpc.max_connection_idle_ms", int(cfg.connection_idle_timeout_s * 1000)),
    ]


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


class LiveCluster:
    """The ClusterView the transfer services use: membership liveness plus the current ring."""

    def __init__(self, local_id: str, view: MembershipView, vnodes: int, dead_grace_s: float, clock: Clock) -> None:
        self.local_id = local_id
        self._view = view
        self._vnodes = vnodes
        self._grace = dead_grace_s
        self._clock = clock
        self._ring = HashRing.build([local_id], vnodes)

    @property
    def ring(self) -> HashRing:
        return self._ring

    def refresh(self) -> None:
        """Rebuilds the ring when the set of ring members changed (join, leave, dead past grace)."""
        ids = ring_members(self._view.members(), self._clock.monotonic(), self._grace)
        if set(ids) != set(self._ring.nodes):
            self._ring = HashRing.build(ids, self._vnodes)
            log.info("ring now has %d peers, digest %s", len(self._ring), self._ring.digest)

    def is_usable(self, node_id: str) -> bool:
        if node_id == self.local_id:
            return True
        member = self._view.get(node_id)
        return member is not None and member.state == MemberState.ALIVE

    def usable_count(self) -> int:
        return sum(1 for n in self._ring.nodes if self.is_usable(n))

    def peer_addr(self, node_id: str) -> str | None:
        """The address of a member's internal chunk service (its own mutual-TLS port with TLS)."""
        member = self._view.get(node_id)
        return member.internal_addr if member is not None else None


@dataclass
class MetadataHealth:
    healthy: bool = True
    error: str = ""


class Node:
    def __init__(
        self,
        config: PeerConfig,
        clock: Clock | None = None,
        metadata: MetadataStore | None = None,
        handle_signals: bool = True,
    ) -> None:
        """`metadata` injects an already-open store (tests share one mongomock store between peers)."""
        self.config = config.validate()
        self.clock = clock or SystemClock()
        self._injected_metadata = metadata
        self._handle_signals = handle_signals
        self.identity: Identity = load_identity(config.data_dir, config.node_id)
        self.stop_event = asyncio.Event()
        self.health = MetadataHealth()

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    async def run(self) -> None:
        cfg = self.config
        # Worker threads mostly wait on fsync; more of them than cores keeps the disk queue full.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="dfs-io")
        )
        store = await asyncio.to_thread(ChunkStore, cfg.data_dir)
        raw_store = self._injected_metadata
        if raw_store is None:
            raw_store = await asyncio.to_thread(
                open_store, cfg.metadata_uri, cfg.database or None, cfg.metadata_write_concern
            )
        metadata = AsyncMetadata(raw_store)
        tls = TlsFiles.load(cfg.tls_cert, cfg.tls_key, cfg.tls_ca) if cfg.tls else None
        signer = PeerSigner(cfg.cluster_secret) if tls is None and cfg.cluster_secret else None
        verifier = None if cfg.no_auth else TokenVerifier(metadata, cfg.token_cache_s)
        max_message = cfg.message_limit
        server = grpc.aio.server(
            options=[*server_options(max_message), *client_limits(cfg)],
            maximum_concurrent_rpcs=cfg.max_concurrent_rpcs,
            interceptors=[AuthInterceptor(ClientAuth(verifier), signer)],
        )
        grpc_host, _ = split_hostport(cfg.grpc_addr)
        grpc_port = _listen(server, cfg.grpc_addr, "gRPC", tls.client_api_credentials() if tls else None)
        grpc_adv = advertised(f"{grpc_host}:{grpc_port}", cfg.advertise_grpc)
        internal = server
        peer_adv = ""
        if tls is not None:
            # Clients cannot be asked for certificates, peers must be: two listeners, two servers,
            # so the chunk service is not even routable from the client port.
            internal = grpc.aio.server(options=server_options(max_message),
                                       interceptors=[AuthInterceptor(ClientAuth(verifier), None)])
            internal_host, _ = split_hostport(cfg.internal_grpc_addr)
            internal_port = _listen(internal, cfg.internal_grpc_addr, "internal gRPC", tls.peer_server_credentials())
            peer_adv = advertised(f"{internal_host}:{internal_port}", cfg.advertise_peer_grpc)
        gossip_host, gossip_port = split_hostport(cfg.gossip_addr)

        transport = HttpGossipTransport(
            signer=signer, ssl_context=client_ssl_context(*self._tls_paths()) if tls else None
        )
        view = MembershipView(
            self.node_id, grpc_adv, "", incarnation=self.identity.incarnation, now=self.clock.monotonic(),
            suspect_timeout_s=cfg.suspect_timeout_s, dead_timeout_s=cfg.dead_timeout_s,
        )
        gossiper = Gossiper(
            view, transport, cfg.seeds,
            interval_s=cfg.gossip_interval_s, fanout=cfg.gossip_fanout, replicas=cfg.replicas,
            vnodes=cfg.vnodes, max_bytes=cfg.max_gossip_bytes, clock=self.clock, resolve_seeds=resolve_seeds,
        )
        app = build_app(gossiper, self._health_doc, cfg.max_gossip_bytes, signer=signer,
                        require_peer_cert=tls is not None, body_timeout_s=cfg.client_idle_timeout_s)
        try:
            runner, bound_gossip = await start_http(
                app, gossip_host, gossip_port, ssl_context=server_ssl_context(*self._tls_paths()) if tls else None,
                idle_timeout_s=cfg.connection_idle_timeout_s,
            )
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConfigError(f"cannot listen for gossip on {cfg.gossip_addr}: {reason}") from exc
        view.set_local_addrs(grpc_adv, advertised(f"{gossip_host}:{bound_gossip}", cfg.advertise_gossip), peer_adv)
        cluster = LiveCluster(self.node_id, view, cfg.vnodes, cfg.dead_grace_s, self.clock)
        gossiper.subscribe(lambda _events: cluster.refresh())
        peers = GrpcChunkPeers(cluster.peer_addr, cfg.rpc_timeout_s, max_message, tls=tls, signer=signer)
        uploads = UploadService(cluster, store, peers, metadata, self.clock, replicas=cfg.replicas,
                                chunk_size=cfg.chunk_size, window=cfg.upload_window,
                                budget=ByteBudget(cfg.inflight_chunks * cfg.chunk_size))
        downloads = DownloadService(cluster, store, peers, metadata, replicas=cfg.replicas,
                                    window=cfg.download_window)
        stats = RepairStats()
        workers = self._repair_workers(cluster, store, peers, metadata, downloads, stats)
        anti_entropy = workers[0][0]
        assert isinstance(anti_entropy, AntiEntropy)

        def local_stats() -> dict[str, Any]:
            return stats_dict(stats, *store.stats, self.clock.monotonic())

        reporter = StatusReporter(
            view, cluster, peers, local_stats, self.clock, replicas=cfg.replicas, vnodes=cfg.vnodes,
            chunk_size=cfg.chunk_size, metadata_backend=metadata.backend,
            metadata_health=lambda: (self.health.healthy, self.health.error),
        )
        limits = ClientLimits(cfg.max_file_size, cfg.max_metadata_bytes, cfg.client_idle_timeout_s,
                              max_get_bytes=max(0, min(ClientLimits.max_get_bytes, max_message - MIB)))
        add_file_store(
            FileStoreServicer(uploads, downloads, metadata, reporter.snapshot,
                              lambda: self._require_metadata(metadata.backend),
                              auth=ClientAuth(verifier), limits=limits),
            server,
        )
        add_peer_chunks(
            PeerChunksServicer(store, anti_entropy.answer, local_stats, self.node_id), internal
        )
        # After every listener is bound: a peer that cannot start says only why.
        self._warn_insecure(tls is not None, signer is not None, verifier is not None)
        if internal is not server:
            await internal.start()
        await server.start()
        if self._handle_signals:
            self._install_signals()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(gossiper.run(self.stop_event))
                tasks.create_task(self._housekeeping(view, cluster, store, metadata))
                for worker, idle_s in workers:
                    tasks.create_task(run_worker(worker, self.stop_event, idle_s, self.clock))
                self._write_ready(view)
                log.info("peer %s serving gRPC on %s, gossip on %s", self.node_id, grpc_adv, view.local.gossip_addr)
                await self.stop_event.wait()
                await gossiper.leave(LEAVE_TIMEOUT_S)
        finally:
            await server.stop(STOP_GRACE_S)
            if internal is not server:
                await internal.stop(STOP_GRACE_S)
            await runner.cleanup()
            await transport.close()
            await peers.close()
            if self._injected_metadata is None:
                await metadata.close()
            (cfg.data_dir / "ready.json").unlink(missing_ok=True)
            log.info("peer %s stopped", self.node_id)

    def _tls_paths(self) -> tuple[Path, Path, Path]:
        cfg = self.config
        return Path(cfg.tls_cert), Path(cfg.tls_key), Path(cfg.tls_ca)

    def _warn_insecure(self, tls: bool, signed: bool, auth: bool) -> None:
        if not tls:
            log.warning("TLS is off: file data, tokens and peer traffic cross the network in clear text; "
                        "use --tls-cert/--tls-key/--tls-ca (see dfs-peer certs init) beyond a trusted network")
        if not auth:
            log.warning("client authentication is off (--no-auth): anyone who reaches the gRPC port may "
                        "read, write, delete and manage tokens")
        if not tls and not signed:
            log.warning("peer authentication is off: without TLS or --cluster-secret, anyone who reaches "
                        "the gossip or gRPC port can join the cluster or write chunks")

    def _repair_workers(
        self,
        cluster: LiveCluster,
        store: ChunkStore,
        peers: GrpcChunkPeers,
        metadata: AsyncMetadata,
        downloads: DownloadService,
        stats: RepairStats,
    ) -> list[tuple[Worker, float]]:
        """The self-healing workers with the idle interval of each; anti-entropy first."""
        cfg = self.config
        return [
            (AntiEntropy(cluster, store, peers, metadata, stats, self.clock, replicas=cfg.replicas,
                         batch=cfg.repair_batch, min_rebuild_s=cfg.repair_interval_s / 2), cfg.repair_interval_s),
            (Scrubber(cluster, store, downloads, stats, self.clock, replicas=cfg.replicas,
                      bytes_per_s=cfg.scrub_bytes_per_s, pass_interval_s=cfg.scrub_interval_s),
             min(cfg.scrub_interval_s, 1.0)),
            (GarbageCollector(store, metadata, stats, self.clock, grace_s=cfg.gc_grace_s), cfg.gc_interval_s),
        ]

    async def _housekeeping(
        self, view: MembershipView, cluster: LiveCluster, store: ChunkStore, metadata: AsyncMetadata
    ) -> None:
        """Keeps the ring current as dead peers pass their grace, and watches the metadata store."""
        next_ping = 0.0
        while not self.stop_event.is_set():
            view.set_local_stats(*store.stats)
            cluster.refresh()
            if self.clock.monotonic() >= next_ping:
                next_ping = self.clock.monotonic() + METADATA_PING_S
                await self._check_metadata(metadata)
            try:
                await asyncio.wait_for(self.stop_event.wait(), self.config.gossip_interval_s)
            except TimeoutError:
                pass

    async def _check_metadata(self, metadata: AsyncMetadata) -> None:
        try:
            await metadata.ping()
        except DfsError as exc:
            if self.health.healthy:
                log.error("degraded: %s", exc)
            self.health = MetadataHealth(False, exc.detail if isinstance(exc, MetadataUnavailable) else str(exc))
            return
        if not self.health.healthy:
            log.info("metadata store %s recovered", metadata.backend)
        self.health = MetadataHealth()

    def _require_metadata(self, backend: str) -> None:
        if not self.health.healthy:
            raise MetadataUnavailable(backend, self.health.error)

    def _health_doc(self) -> dict[str, object]:
        status = "ok" if self.health.healthy else "degraded"
        return {"status": status, "node_id": self.node_id, "metadata_error": self.health.error}

    def _write_ready(self, view: MembershipView) -> None:
        me = view.local
        doc = {"node_id": self.node_id, "grpc_addr": me.grpc_addr, "gossip_addr": me.gossip_addr,
               "peer_addr": me.internal_addr, "tls": self.config.tls, "pid": os.getpid()}
        write_durable(self.config.data_dir / "ready.json", json.dumps(doc).encode())

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
