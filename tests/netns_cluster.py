"""A cluster of real peer processes, each on its own host of a `Network` (tests/netns.py).

The peers are the same `dfs-peer serve` processes as tests/cluster.py starts, run through
`ip netns exec`, which execs the peer itself (signals and exit codes are the peer's). Each binds its
host's address on fixed ports, as a peer on its own machine would, and advertises that address; a
restart keeps it. They share the metadata store: one SQLite file on this machine's file system, which
every namespace sees (in production the metadata store is a service on the network, MongoDB or
PostgreSQL; here it sits outside every partition, so metadata calls never cross the faults).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from tests.cluster import Cluster, PeerProc
from tests.netns import Host, Network

GRPC_PORT = 50051
GOSSIP_PORT = 7946


class NetnsPeer(PeerProc):
    def __init__(self, host: Host, base: Path, index: int, metadata: str, replicas: int, extra: Sequence[str],
                 client_kwargs: dict[str, Any] | None = None) -> None:
        # Later flags win: these replace the loopback port-0 addresses PeerProc passes first.
        addrs = ["--grpc-addr", f"{host.addr}:{GRPC_PORT}", "--gossip-addr", f"{host.addr}:{GOSSIP_PORT}",
                 "--s3-addr", ""]
        super().__init__(base, index, metadata, replicas, [*extra, *addrs], client_kwargs)
        self.host = host

    def spawn(self, args: list[str], log: IO[bytes], env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*self.host.exec_prefix(), *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)


class NetnsCluster(Cluster):
    """Cluster whose peer i runs on host i of `network`; a peer added later gets a new host."""

    def __init__(self, base: Path, network: Network, replicas: int = 2, extra: Sequence[str] = ()) -> None:
        super().__init__(base, replicas=replicas, extra=extra)
        self.network = network

    def prepare_peer(self, host: Host) -> NetnsPeer:
        """The next peer, on `host` (which must be the network's host of the same index), not started."""
        index = len(self.peers)
        if host.index != index:
            raise ValueError(f"peer {index} must run on host {index}, not {host.index}")
        peer = NetnsPeer(host, self.base, index, self.metadata, self.replicas, self.extra, self.client_kwargs)
        self.peers.append(peer)  # before it starts, so close() stops it whatever happens next
        return peer

    def add_peer(self, env: dict[str, str] | None = None) -> PeerProc:
        index = len(self.peers)
        host = self.network.hosts[index] if index < len(self.network.hosts) else self.network.add_host()
        seeds = [p.gossip_addr for p in self.live()][:2]
        return self.prepare_peer(host).start(seeds, env)
