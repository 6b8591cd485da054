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
from typing import Any

import grpc

from peer.clock import Clock, SystemClock
from peer.config import PeerConfig, advertised, split_hostport
from peer.errors import ConfigError, DfsError, MetadataUnavailable
from peer.gossip_http.client import HttpGossipTransport, resolve_seeds
from peer.gossip_http.server import build_app, start_http
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
from peer.rpc.client_service import FileStoreServicer
from peer.rpc.client_service import add_to_server as add_file_store
from peer.rpc.peer_client import GrpcChunkPeers, server_options
from peer.rpc.peer_service import PeerChunksServicer
from peer.rpc.peer_service import add_to_server as add_peer_chunks
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


def _check_bindable(addr: str, what: str) -> None:
    """Refuses a busy or foreign address with one clear line before grpc logs its own complaint."""
    host, port = split_hostport(addr)
    if port == 0:
        return
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot listen for {what} on {addr}: {exc.strerror or exc}") from exc


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

    def grpc_addr(self, node_id: str) -> str | None:
        member = self._view.get(node_id)
        return member.grpc_addr if member is not None else None


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
        self.identity: Identity = load_identity(config.data_dir)
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
        max_message = cfg.chunk_size + 1024 * 1024
        server = grpc.aio.server(options=server_options(max(max_message, 8 * 1024 * 1024)))
        grpc_host, _ = split_hostport(cfg.grpc_addr)
        _check_bindable(cfg.grpc_addr, "gRPC")
        try:
            grpc_port = server.add_insecure_port(cfg.grpc_addr)
        except RuntimeError as exc:  # grpc reports a failed bind this way
            raise ConfigError(f"cannot listen for gRPC on {cfg.grpc_addr}: address in use or not local") from exc
        if grpc_port == 0:
            raise ConfigError(f"cannot listen for gRPC on {cfg.grpc_addr}")
        gossip_host, gossip_port = split_hostport(cfg.gossip_addr)
        grpc_adv = advertised(f"{grpc_host}:{grpc_port}", cfg.advertise_grpc)

        transport = HttpGossipTransport()
        view = MembershipView(
            self.node_id, grpc_adv, "", incarnation=self.identity.incarnation, now=self.clock.monotonic(),
            suspect_timeout_s=cfg.suspect_timeout_s, dead_timeout_s=cfg.dead_timeout_s,
        )
        gossiper = Gossiper(
            view, transport, cfg.seeds,
            interval_s=cfg.gossip_interval_s, fanout=cfg.gossip_fanout, replicas=cfg.replicas,
            vnodes=cfg.vnodes, max_bytes=cfg.max_gossip_bytes, clock=self.clock, resolve_seeds=resolve_seeds,
        )
        try:
            runner, bound_gossip = await start_http(
                build_app(gossiper, self._health_doc, cfg.max_gossip_bytes), gossip_host, gossip_port
            )
        except OSError as exc:
            raise ConfigError(f"cannot listen for gossip on {cfg.gossip_addr}: {exc.strerror or exc}") from exc
        view.set_local_addrs(grpc_adv, advertised(f"{gossip_host}:{bound_gossip}", cfg.advertise_gossip))
        cluster = LiveCluster(self.node_id, view, cfg.vnodes, cfg.dead_grace_s, self.clock)
        gossiper.subscribe(lambda _events: cluster.refresh())
        peers = GrpcChunkPeers(cluster.grpc_addr, cfg.rpc_timeout_s, max_message)
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
        add_file_store(
            FileStoreServicer(uploads, downloads, metadata, reporter.snapshot,
                              lambda: self._require_metadata(metadata.backend)),
            server,
        )
        add_peer_chunks(
            PeerChunksServicer(store, anti_entropy.answer, local_stats, self.node_id), server
        )
        await server.start()
        if self._handle_signals:
            self._install_signals()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(gossiper.run(self.stop_event))
                tasks.create_task(self._housekeeping(view, cluster, store, metadata))
                for worker, idle_s in workers:
                    tasks.create_task(run_worker(worker, self.stop_event, idle_s, self.clock))
                self._write_ready(grpc_adv, view)
                log.info("peer %s serving gRPC on %s, gossip on %s", self.node_id, grpc_adv, view.local.gossip_addr)
                await self.stop_event.wait()
                await gossiper.leave(LEAVE_TIMEOUT_S)
        finally:
            await server.stop(STOP_GRACE_S)
            await runner.cleanup()
            await transport.close()
            await peers.close()
            if self._injected_metadata is None:
                await metadata.close()
            (cfg.data_dir / "ready.json").unlink(missing_ok=True)
            log.info("peer %s stopped", self.node_id)

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

    def _write_ready(self, grpc_addr: str, view: MembershipView) -> None:
        doc = {"node_id": self.node_id, "grpc_addr": grpc_addr, "gossip_addr": view.local.gossip_addr,
               "pid": os.getpid()}
        write_durable(self.config.data_dir / "ready.json", json.dumps(doc).encode())

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
