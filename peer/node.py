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
from dataclasses import dataclass

import grpc

from peer.clock import Clock, SystemClock
from peer.config import PeerConfig, split_hostport
from peer.errors import DfsError, MetadataUnavailable
from peer.gossip_http.client import HttpGossipTransport
from peer.gossip_http.server import build_app, start_http
from peer.identity import Identity, load_identity
from peer.membership.gossiper import Gossiper
from peer.membership.state import MembershipView, MemberState
from peer.metadata.open import open_store
from peer.metadata.store import AsyncMetadata, MetadataStore
from peer.ring.hashring import HashRing
from peer.ring.placement import ring_members
from peer.rpc.client_service import ClusterSnapshot, FileStoreServicer, MemberSnapshot
from peer.rpc.peer_client import GrpcChunkPeers, channel_options
from peer.rpc.peer_service import PeerChunksServicer
from peer.storage.chunkstore import ChunkStore, write_durable
from peer.transfer.download import DownloadService
from peer.transfer.upload import UploadService
from proto import dfs_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

LEAVE_TIMEOUT_S = 2.0
STOP_GRACE_S = 5.0
METADATA_PING_S = 2.0


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
        store = await asyncio.to_thread(ChunkStore, cfg.data_dir)
        raw_store = self._injected_metadata
        if raw_store is None:
            raw_store = await asyncio.to_thread(open_store, cfg.metadata_uri)
        metadata = AsyncMetadata(raw_store)
        max_message = cfg.chunk_size + 1024 * 1024
        server = grpc.aio.server(options=channel_options(max(max_message, 8 * 1024 * 1024)))
        grpc_host, _ = split_hostport(cfg.grpc_addr)
        grpc_port = server.add_insecure_port(cfg.grpc_addr)
        if grpc_port == 0:
            raise DfsError(f"cannot listen for gRPC on {cfg.grpc_addr}")
        gossip_host, gossip_port = split_hostport(cfg.gossip_addr)
        grpc_adv = cfg.advertise_grpc or f"{grpc_host}:{grpc_port}"

        transport = HttpGossipTransport()
        view = MembershipView(
            self.node_id, grpc_adv, "", incarnation=self.identity.incarnation, now=self.clock.monotonic(),
            suspect_timeout_s=cfg.suspect_timeout_s, dead_timeout_s=cfg.dead_timeout_s,
        )
        gossiper = Gossiper(
            view, transport, cfg.seeds,
            interval_s=cfg.gossip_interval_s, fanout=cfg.gossip_fanout, replicas=cfg.replicas,
            vnodes=cfg.vnodes, max_bytes=cfg.max_gossip_bytes, clock=self.clock,
        )
        runner, bound_gossip = await start_http(
            build_app(gossiper, self._health_doc, cfg.max_gossip_bytes), gossip_host, gossip_port
        )
        view.set_local_addrs(grpc_adv, cfg.advertise_gossip or f"{gossip_host}:{bound_gossip}")
        cluster = LiveCluster(self.node_id, view, cfg.vnodes, cfg.dead_grace_s, self.clock)
        gossiper.subscribe(lambda _events: cluster.refresh())
        peers = GrpcChunkPeers(cluster.grpc_addr, cfg.rpc_timeout_s, max_message)
        uploads = UploadService(cluster, store, peers, metadata, self.clock, replicas=cfg.replicas,
                                chunk_size=cfg.chunk_size, window=cfg.upload_window)
        downloads = DownloadService(cluster, store, peers, metadata, replicas=cfg.replicas,
                                    window=cfg.download_window)
        pb_grpc.add_FileStoreServicer_to_server(
            FileStoreServicer(
                uploads, downloads, metadata, lambda: self._snapshot(view, cluster, metadata),
                lambda: self._require_metadata(metadata.backend),
            ),
            server,
        )
        pb_grpc.add_PeerChunksServicer_to_server(PeerChunksServicer(store), server)
        await server.start()
        if self._handle_signals:
            self._install_signals()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(gossiper.run(self.stop_event))
                tasks.create_task(self._housekeeping(view, cluster, store, metadata))
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

    def _snapshot(self, view: MembershipView, cluster: LiveCluster, metadata: AsyncMetadata) -> ClusterSnapshot:
        now = self.clock.monotonic()
        on_ring = set(cluster.ring.nodes)
        members = tuple(
            MemberSnapshot(
                node_id=m.node_id, state=m.state.value, grpc_addr=m.grpc_addr, gossip_addr=m.gossip_addr,
                incarnation=m.incarnation, heartbeat=m.heartbeat, chunk_count=m.chunk_count,
                chunk_bytes=m.chunk_bytes, on_ring=m.node_id in on_ring,
                last_seen_s=0.0 if m.node_id == self.node_id else max(0.0, now - m.last_seen),
            )
            for m in sorted(view.members(), key=lambda m: m.node_id)
        )
        return ClusterSnapshot(
            node_id=self.node_id, ring_digest=cluster.ring.digest, replicas=self.config.replicas,
            vnodes=self.config.vnodes, chunk_size=self.config.chunk_size, members=members,
            metadata_backend=metadata.backend, metadata_healthy=self.health.healthy,
            metadata_error=self.health.error,
        )

    def _write_ready(self, grpc_addr: str, view: MembershipView) -> None:
        doc = {"node_id": self.node_id, "grpc_addr": grpc_addr, "gossip_addr": view.local.gossip_addr,
               "pid": os.getpid()}
        write_durable(self.config.data_dir / "ready.json", json.dumps(doc).encode())

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
