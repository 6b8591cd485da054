"""The composition root: builds every component of one peer, runs them, and stops them in order.

Start: identity -> chunk store -> metadata -> security -> gRPC listeners bound (ports read back) ->
membership -> gossip listener (port read back) -> services and background workers -> S3 listener
(port read back) -> gRPC serving -> ready.json. Stop (SIGTERM/SIGINT/SIGHUP): announce LEAVE to the cluster,
drain the background workers (each finishes its unit of work), stop the gRPC servers with a grace
period, close listeners, connections and stores, remove ready.json. Every long-lived task belongs
to one TaskGroup and watches one stop Event; the background workers run under one WorkerRunner.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import shutil
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peer.clock import Clock, SystemClock
from peer.config import MIB, PeerConfig, advertised, split_hostport
from peer.erasure import check_available as check_erasure_code
from peer.errors import ConfigError
from peer.files import ClientLimits, FileService
from peer.files.buckets import BucketService
from peer.housekeeping import Housekeeping
from peer.http.chunks import ChunkServing, StreamChunkPeers, chunks_app
from peer.http.console import ConsoleSources, console_app
from peer.http.gossip import gossip_app
from peer.http.gossip_client import HttpGossipTransport, resolve_seeds
from peer.http.health import health_app
from peer.http.metrics import metrics_app, metrics_off_app
from peer.http.s3 import s3_app
from peer.http.server import HttpServer
from peer.http.tls import client_ssl_context, server_only_ssl_context, server_ssl_context
from peer.identity import Identity, load_identity
from peer.membership.gossiper import Gossiper
from peer.membership.state import MembershipView, MemberState
from peer.memory import resident_bytes
from peer.metadata.open import open_store
from peer.metadata.store import AsyncMetadata, MetadataStore
from peer.metadata.timed import timed
from peer.metrics import PeerMetrics
from peer.repair.antientropy import AntiEntropy
from peer.repair.fragments import FragmentRebuilder
from peer.repair.gc import GarbageCollector
from peer.repair.scrub import Scrubber
from peer.ring.hashring import HashRing
from peer.ring.placement import Placement, ring_members
from peer.ring.policy import InvalidPolicy, Policy
from peer.rpc.auth import ClientAuth
from peer.rpc.client_service import FileStoreServicer
from peer.rpc.peer_client import GrpcChunkPeers
from peer.rpc.peer_service import PeerChunksServicer
from peer.rpc.server import GrpcListeners, bind_listeners
from peer.rpc.tls import TlsFiles
from peer.security.peerauth import PeerSigner
from peer.security.s3keys import S3Keys, load_secret_box
from peer.security.tokens import TokenVerifier
from peer.status import StatusReporter, stats_dict
from peer.storage.chunkstore import ChunkStore, write_durable
from peer.transfer.budget import ByteBudget
from peer.transfer.download import DownloadService
from peer.transfer.upload import UploadService
from peer.workers import WorkerRunner

log = logging.getLogger(__name__)

IO_THREADS = 16
LEAVE_TIMEOUT_S = 2.0
STOP_GRACE_S = 5.0


def cluster_policy(config: PeerConfig) -> Policy:
    """The cluster's default redundancy policy (DFS_DEFAULT_POLICY, else rep:DFS_REPLICAS), checked
    when the peer starts, so a misspelt one stops the peer with one line naming the setting instead
    of failing the first upload."""
    try:
        return Policy.parse(config.policy_text)
    except InvalidPolicy as exc:
        setting = "DFS_DEFAULT_POLICY" if config.default_policy else "DFS_REPLICAS"
        raise ConfigError(f"{setting}: {exc}") from None


class LiveCluster:
    """The ClusterView the transfer services use: membership liveness plus the current ring."""

    def __init__(
        self, local_id: str, view: MembershipView, vnodes: int, dead_grace_s: float, clock: Clock, policy: Policy
    ) -> None:
        self.local_id = local_id
        self._view = view
        self._vnodes = vnodes
        self._grace = dead_grace_s
        self._clock = clock
        self._ring = HashRing.build([local_id], vnodes, {local_id: view.local.zone})
        self.on_change: Callable[[], None] = lambda: None
        """Called after each rebuild of the ring (the metrics count them)."""
        # Where chunks go, on whatever ring is current when asked, under the cluster's policy.
        self.placement = Placement(lambda: self._ring, self.is_usable, policy)

    @property
    def ring(self) -> HashRing:
        return self._ring

    def refresh(self) -> None:
        """Rebuilds the ring when the set of ring members changed (join, leave, dead past grace) or one
        of them announced another zone (a restart with a new DFS_ZONE)."""
        members = self._view.members()
        ids = ring_members(members, self._clock.monotonic(), self._grace)
        on_ring = set(ids)
        zones = {m.node_id: m.zone for m in members if m.zone and m.node_id in on_ring}
        if on_ring != set(self._ring.nodes) or zones != dict(self._ring.zones):
            self._ring = HashRing.build(ids, self._vnodes, zones)
            log.info("ring now has %d peers in %d zones, digest %s", len(self._ring),
                     len({self._ring.zone_of(node_id) for node_id in ids}), self._ring.digest)
            self.on_change()

    def members_down(self) -> int:
        """Members dead now (not departed): off the ring past their grace, yet they may come back
        holding copies."""
        return sum(1 for m in self._view.members() if m.state == MemberState.DEAD)

    def is_usable(self, node_id: str) -> bool:
        if node_id == self.local_id:
            return True
        member = self._view.get(node_id)
        return member is not None and member.state == MemberState.ALIVE

    def peer_addr(self, node_id: str) -> str | None:
        """The address of a member's internal chunk service (its own mutual-TLS port with TLS)."""
        member = self._view.get(node_id)
        return member.internal_addr if member is not None else None

    def http_addr(self, node_id: str) -> str | None:
        """The address of a member's HTTP listener, where its chunk streams open (gossip's address)."""
        member = self._view.get(node_id)
        return member.gossip_addr if member is not None else None


@dataclass(frozen=True)
class _Base:
    """What every other part is built on: the local disk, the metadata store, and how peers and
    clients prove who they are (TLS files, the cluster-secret signer, the token verifier, the S3
    access keys: `s3_keys.lookup(access_key_id)` gives the S3 edge a key's secret and role)."""

    store: ChunkStore
    metadata: AsyncMetadata
    tls: TlsFiles | None
    signer: PeerSigner | None
    verifier: TokenVerifier | None
    s3_keys: S3Keys


@dataclass(frozen=True)
class _Membership:
    view: MembershipView
    transport: HttpGossipTransport
    gossiper: Gossiper
    cluster: LiveCluster
    policy: Policy


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
        self.policy = cluster_policy(self.config)  # refused here, before anything starts
        self.clock = clock or SystemClock()
        self._injected_metadata = metadata
        self._handle_signals = handle_signals
        self.identity: Identity = load_identity(config.data_dir, config.node_id)
        self.stop_event = asyncio.Event()
        self.metrics = PeerMetrics()  # every statistic of this peer; status and /metrics read it
        # What the request path counts into: nothing with --no-metrics (the workers still update
        # self.metrics, which `dfs status` reads).
        self.request_metrics = self.metrics if self.config.metrics else None
        self._s3_addr = ""  # the S3 API's bound address once it listens ("" when off)
        self._console = ConsoleSources()  # what /console/ shows, attached once the file service exists

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    async def run(self) -> None:
        """Builds the peer, serves until `stop_event` is set, then stops it in order (see the module doc)."""
        self._use_io_threads()
        base = await self._base()
        grpc = bind_listeners(self.config, base.tls, base.signer, ClientAuth(base.verifier), self.request_metrics)
        members = self._membership(base, grpc.grpc_addr)
        chores = Housekeeping(members.view, lambda: base.store.stats, members.cluster.refresh, base.metadata,
                              self.clock)
        self._track(members, grpc, chores)
        http = await self._start_http(base, members, grpc, chores)
        peers = self._chunk_peers(base, members)
        workers, files = self._services(base, grpc, members, peers, chores)
        s3 = await self._start_s3(base, files)
        # After every listener is bound: a peer that cannot start says only why.
        self._warn_insecure(base.tls is not None, base.signer is not None, base.verifier is not None)
        if base.s3_keys.box.generated:
            log.warning("S3 secrets are sealed under the %s: peers with another data directory cannot open "
                        "keys made here; give every peer the same --s3-key-file or --cluster-secret",
                        base.s3_keys.box.source)
        await grpc.start()
        if self._handle_signals:
            self._install_signals()
        try:
            await self._serve(workers, members)
        finally:
            await members.gossiper.close()
            await grpc.stop(STOP_GRACE_S)
            await http.stop()
            if s3 is not None:
                await s3.stop()
            await members.transport.close()
            await peers.close()
            if self._injected_metadata is None:
                await base.metadata.close()
            (self.config.data_dir / "ready.json").unlink(missing_ok=True)
            log.info("peer %s stopped", self.node_id)

    # -- builders, in the order run() calls them ------------------------------------------------

    def _use_io_threads(self) -> None:
        # Worker threads mostly wait on fsync; more of them than cores keeps the disk queue full.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="dfs-io")
        )

    async def _base(self) -> _Base:
        cfg = self.config
        check_erasure_code()  # a peer that could not read coded chunks must not join
        store = await asyncio.to_thread(ChunkStore, cfg.data_dir)
        raw_store = self._injected_metadata
        if raw_store is None:
            raw_store = await asyncio.to_thread(
                open_store, cfg.metadata_uri, cfg.database or None, cfg.metadata_write_concern
            )
        metadata = AsyncMetadata(timed(raw_store, self.metrics.observe_metadata) if cfg.metrics else raw_store)
        tls = TlsFiles.load(cfg.tls_cert, cfg.tls_key, cfg.tls_ca) if cfg.tls else None
        signer = PeerSigner(cfg.cluster_secret) if tls is None and cfg.cluster_secret else None
        verifier = None if cfg.no_auth else TokenVerifier(metadata, cfg.token_cache_s)
        box = await asyncio.to_thread(load_secret_box, cfg.s3_key_file, cfg.cluster_secret, cfg.data_dir)
        s3_keys = S3Keys(metadata, box, cfg.token_cache_s, self.clock)
        return _Base(store, metadata, tls, signer, verifier, s3_keys)

    def _membership(self, base: _Base, grpc_addr: str) -> _Membership:
        """The membership view, the gossiper that keeps it current, and the ring that follows it."""
        cfg = self.config
        transport = HttpGossipTransport(
            signer=base.signer, ssl_context=client_ssl_context(*self._tls_paths()) if base.tls else None
        )
        view = MembershipView(
            self.node_id, grpc_addr, "", incarnation=self.identity.incarnation, now=self.clock.monotonic(),
            suspect_timeout_s=cfg.suspect_timeout_s, dead_timeout_s=cfg.dead_timeout_s, zone=cfg.zone,
        )
        policy = self.policy
        gossiper = Gossiper(
            view, transport, cfg.seeds,
            interval_s=cfg.gossip_interval_s, fanout=cfg.gossip_fanout, policy=str(policy),
            vnodes=cfg.vnodes, max_bytes=cfg.max_gossip_bytes, clock=self.clock, resolve_seeds=resolve_seeds,
        )
        cluster = LiveCluster(self.node_id, view, cfg.vnodes, cfg.dead_grace_s, self.clock, policy)
        gossiper.subscribe(lambda _events: cluster.refresh())
        return _Membership(view, transport, gossiper, cluster, policy)

    def _chunk_peers(self, base: _Base, members: _Membership) -> StreamChunkPeers:
        """How this peer reaches the others: chunk data on chunk streams to their HTTP listeners, the
        small calls (and chunk data to a peer of the previous version) over gRPC."""
        cfg = self.config
        grpc_peers = GrpcChunkPeers(members.cluster.peer_addr, cfg.rpc_timeout_s, cfg.message_limit,
                                    tls=base.tls, signer=base.signer)
        return StreamChunkPeers(members.cluster.http_addr, grpc_peers, timeout_s=cfg.rpc_timeout_s,
                                max_body=cfg.message_limit, signer=base.signer,
                                ssl_context=client_ssl_context(*self._tls_paths()) if base.tls else None)

    async def _start_http(
        self, base: _Base, members: _Membership, grpc: GrpcListeners, chores: Housekeeping
    ) -> HttpServer:
        """Serves gossip and /health on the gossip address, then advertises every bound address."""
        cfg = self.config
        http = HttpServer(idle_timeout_s=cfg.connection_idle_timeout_s)
        http.mount(gossip_app(members.gossiper, cfg.max_gossip_bytes, signer=base.signer,
                              require_peer_cert=base.tls is not None, body_timeout_s=cfg.client_idle_timeout_s))
        http.mount(health_app(lambda: chores.health_doc(self.node_id)))
        failures = self.request_metrics.auth_failed if self.request_metrics else None
        http.mount(metrics_app(self.metrics.render, cfg.metrics_networks, base.verifier, failures)
                   if cfg.metrics else metrics_off_app())
        http.mount(console_app(self._console, base.verifier, failures,
                               idle_s=cfg.client_idle_timeout_s))
        # Received and outgoing chunk bodies of every stream together: a budget of its own, apart from
        # the uploads', so a peer's uploads waiting on its budget never hold up the copies it receives.
        serving = ChunkServing(base.store, ByteBudget(cfg.inflight_chunks * cfg.chunk_size), cfg.message_limit,
                               body_timeout_s=cfg.rpc_timeout_s, idle_timeout_s=cfg.connection_idle_timeout_s,
                               moved=functools.partial(self.metrics.peer_chunk_bytes_moved, "stream"))
        http.mount(chunks_app(serving, signer=base.signer, require_peer_cert=base.tls is not None))
        gossip_host, gossip_port = split_hostport(cfg.gossip_addr)
        try:
            bound_gossip = await http.start(
                gossip_host, gossip_port, ssl_context=server_ssl_context(*self._tls_paths()) if base.tls else None,
            )
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConfigError(f"cannot listen for gossip on {cfg.gossip_addr}: {reason}") from exc
        gossip_addr = advertised(f"{gossip_host}:{bound_gossip}", cfg.advertise_gossip)
        members.view.set_local_addrs(grpc.grpc_addr, gossip_addr, grpc.peer_addr)
        return http

    def _services(
        self, base: _Base, grpc: GrpcListeners, members: _Membership, peers: StreamChunkPeers, chores: Housekeeping
    ) -> tuple[WorkerRunner, FileService]:
        """Transfers, background workers and status, served on the bound gRPC listeners; the file
        service, which the S3 API serves too."""
        cfg = self.config
        cluster = members.cluster
        budget = ByteBudget(cfg.inflight_chunks * cfg.chunk_size)
        self.metrics.track_budget(lambda: budget.used, budget.limit)
        uploads = UploadService(cluster, base.store, peers, base.metadata, self.clock, placement=cluster.placement,
                                chunk_size=cfg.chunk_size, window=cfg.upload_window, budget=budget)
        downloads = DownloadService(cluster, base.store, peers, base.metadata, placement=cluster.placement,
                                    window=cfg.download_window, members_down=cluster.members_down)
        self.metrics.track_store(lambda: base.store.stats)
        self.metrics.track_quarantine(lambda: base.store.quarantined)
        anti_entropy = AntiEntropy(cluster, base.store, peers, base.metadata, self.metrics, self.clock,
                                   placement=cluster.placement, batch=cfg.repair_batch,
                                   min_rebuild_s=cfg.repair_interval_s / 2)
        workers = self._workers(base, members, chores, anti_entropy, downloads)

        def local_stats() -> dict[str, Any]:
            return {**stats_dict(self.metrics, self.clock.wall()), "workers": workers.report()}

        reporter = StatusReporter(
            members.view, cluster, peers, local_stats, self.clock, policy=members.policy, vnodes=cfg.vnodes,
            chunk_size=cfg.chunk_size, metadata_backend=base.metadata.backend, metadata_health=chores.metadata_health,
        )
        limits = ClientLimits(cfg.max_file_size, cfg.max_metadata_bytes, cfg.client_idle_timeout_s,
                              max_get_bytes=max(0, min(ClientLimits.max_get_bytes, cfg.message_limit - MIB)))
        files = FileService(uploads, downloads, base.metadata, chores.metadata_health,
                            limits=limits, verifier=base.verifier, s3_keys=base.s3_keys, clock=self.clock)
        self._console.attach(files, reporter.snapshot, lambda: cluster.ring)
        grpc.serve(FileStoreServicer(files, reporter.snapshot, auth=ClientAuth(base.verifier),
                                     buckets=BucketService(files, base.metadata, self.clock)),
                   PeerChunksServicer(base.store, anti_entropy.answer, local_stats, self.node_id,
                                      trust_checksums=base.signer is None,
                                      moved=functools.partial(self.metrics.peer_chunk_bytes_moved, "grpc")))
        return workers, files

    async def _start_s3(self, base: _Base, files: FileService) -> HttpServer | None:
        """The S3 API on its own HTTP listener (HTTPS with TLS, no client certificate asked), port read
        back; None when DFS_S3_ADDR is empty."""
        cfg = self.config
        if not cfg.s3_addr:
            return None
        server = HttpServer(idle_timeout_s=cfg.connection_idle_timeout_s)
        server.mount(s3_app(files, BucketService(files, base.metadata, self.clock), base.s3_keys.lookup,
                            no_auth=cfg.no_auth, domain=cfg.s3_domain, idle_s=cfg.client_idle_timeout_s,
                            metrics=self.request_metrics, access_log=cfg.access_log))
        host, port = split_hostport(cfg.s3_addr, "s3_addr")
        ssl_context = server_only_ssl_context(Path(cfg.tls_cert), Path(cfg.tls_key)) if base.tls else None
        try:
            bound = await server.start(host, port, ssl_context=ssl_context)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConfigError(f"cannot listen for S3 on {cfg.s3_addr}: {reason}") from exc
        self._s3_addr = advertised(f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}", "")
        return server

    def _workers(
        self,
        base: _Base,
        members: _Membership,
        chores: Housekeeping,
        anti_entropy: AntiEntropy,
        downloads: DownloadService,
    ) -> WorkerRunner:
        """Every background worker with the idle interval of each, in the order `dfs status` lists them."""
        cfg = self.config
        cluster = members.cluster
        runner = WorkerRunner(self.clock, self.stop_event)
        runner.add(members.gossiper, members.gossiper.interval_s)
        runner.add(chores, cfg.gossip_interval_s)
        runner.add(anti_entropy, cfg.repair_interval_s)
        runner.add(Scrubber(cluster, base.store, downloads, base.metadata, self.metrics, self.clock,
                            placement=cluster.placement, bytes_per_s=cfg.scrub_bytes_per_s,
                            pass_interval_s=cfg.scrub_interval_s),
                   min(cfg.scrub_interval_s, 1.0))
        runner.add(FragmentRebuilder(cluster, base.store, downloads.fragments, base.metadata, self.metrics, self.clock,
                                     placement=cluster.placement, batch=cfg.repair_batch,
                                     pass_interval_s=cfg.repair_interval_s),
                   cfg.repair_interval_s)
        runner.add(GarbageCollector(base.store, base.metadata, self.metrics, self.clock, grace_s=cfg.gc_grace_s,
                                    multipart_expiry_s=cfg.multipart_expiry_s),
                   cfg.gc_interval_s)
        self.metrics.track_workers(runner.states, lambda: self.clock.wall() - self.clock.monotonic())
        return runner

    def _track(self, members: _Membership, grpc: GrpcListeners, chores: Housekeeping) -> None:
        """What the metrics read at each scrape (members, ring, disk, memory) or hear of (ring rebuilds, the
        metadata store's health, which the gRPC health service answers with too)."""
        view, cluster = members.view, members.cluster
        self.metrics.track_cluster(lambda: [m.state.value for m in view.members()], lambda: len(cluster.ring))
        cluster.on_change = self.metrics.ring_changes.inc
        data_dir = self.config.data_dir

        def disk() -> tuple[int, int]:
            usage = shutil.disk_usage(data_dir)
            return usage.total, usage.free

        self.metrics.track_disk(disk)
        self.metrics.track_memory(resident_bytes)

        async def health_changed(healthy: bool) -> None:
            self.metrics.metadata_healthy.set(1 if healthy else 0)
            await grpc.set_serving(healthy)

        chores.on_health_change(health_changed)

    # -- running --------------------------------------------------------------------------------

    async def _serve(self, workers: WorkerRunner, members: _Membership) -> None:
        """Runs the workers until `stop_event`, announcing LEAVE while they finish their last unit."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(workers.run())
            self._write_ready(members.view)
            log.info("peer %s serving gRPC on %s, gossip on %s, S3 on %s", self.node_id,
                     members.view.local.grpc_addr, members.view.local.gossip_addr, self._s3_addr or "(off)")
            await self.stop_event.wait()
            await members.gossiper.leave(LEAVE_TIMEOUT_S)

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

    def _write_ready(self, view: MembershipView) -> None:
        me = view.local
        doc = {"node_id": self.node_id, "grpc_addr": me.grpc_addr, "gossip_addr": me.gossip_addr,
               "peer_addr": me.internal_addr, "s3_addr": self._s3_addr, "tls": self.config.tls, "pid": os.getpid()}
        write_durable(self.config.data_dir / "ready.json", json.dumps(doc).encode())

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        # SIGHUP too: a peer whose terminal closes (or whose stopped process group the kernel finds
        # orphaned) leaves the cluster cleanly instead of dying without a word.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stop_event.set)
