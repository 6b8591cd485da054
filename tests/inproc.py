"""Peers as Node objects in one event loop on a background thread, with real sockets on 127.0.0.1.

Used where peers must share an in-process object, such as one mongomock metadata store (mongomock
cannot be reached from another process). Each peer still has its own gRPC server, gossip endpoint
and data directory; tests talk to them over the network exactly as with process clusters.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from client.sdk import DfsClient
from peer.config import PeerConfig
from peer.metadata.store import MetadataStore
from peer.node import Node
from tests.cluster import wait_for, wait_ring_agreement


class SerializedStore:
    """Runs one call at a time: mongomock, unlike a MongoDB server, is not atomic across threads."""

    def __init__(self, inner: MetadataStore) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.backend = inner.backend

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


@dataclasses.dataclass
class InProcPeer:
    index: int
    data_dir: Path
    node: Node
    future: Future[None]
    node_id: str = ""
    grpc_addr: str = ""
    gossip_addr: str = ""

    def client(self, timeout: float = 30) -> DfsClient:
        return DfsClient(self.grpc_addr, timeout=timeout)

    def chunk_path(self, chunk_id: str) -> Path:
        return self.data_dir / "chunks" / chunk_id[:2] / chunk_id[2:4] / chunk_id


class InProcCluster:
    def __init__(self, base: Path, metadata: MetadataStore, replicas: int = 2) -> None:
        self.base = base
        self.metadata = SerializedStore(metadata)
        self.replicas = replicas
        self.peers: list[InProcPeer] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="inproc-cluster", daemon=True)
        self._thread.start()

    def add_peer(self) -> InProcPeer:
        index = len(self.peers)
        data_dir = self.base / f"peer{index}"
        seeds: Sequence[str] = tuple(p.gossip_addr for p in self.peers[:2])
        config = PeerConfig.local(data_dir, seeds=tuple(seeds), replicas=self.replicas)
        node = Node(config, metadata=self.metadata, handle_signals=False)  # type: ignore[arg-type]
        future = asyncio.run_coroutine_threadsafe(node.run(), self.loop)
        peer = InProcPeer(index, data_dir, node, future)
        ready = data_dir / "ready.json"
        wait_for(lambda: ready.exists() or future.done(), 20, f"in-process peer{index} ready")
        if future.done():
            future.result()
        doc = json.loads(ready.read_text())
        peer.node_id, peer.grpc_addr, peer.gossip_addr = doc["node_id"], doc["grpc_addr"], doc["gossip_addr"]
        self.peers.append(peer)
        return peer

    def start(self, n: int) -> InProcCluster:
        for _ in range(n):
            self.add_peer()
        self.wait_converged()
        return self

    def live(self) -> list[InProcPeer]:
        return [p for p in self.peers if not p.future.done()]

    def wait_converged(self, timeout: float = 20) -> str:
        return wait_ring_agreement(self.live(), timeout)

    def stop_peer(self, peer: InProcPeer, timeout: float = 15) -> None:
        self.loop.call_soon_threadsafe(peer.node.stop_event.set)
        peer.future.result(timeout)

    def close(self) -> None:
        for peer in self.live():
            self.stop_peer(peer)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
