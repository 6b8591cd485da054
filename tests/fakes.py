"""Stand-ins for the rest of a peer, shared by the transfer-service unit tests."""

from __future__ import annotations

import asyncio

from peer.clock import Clock
from peer.membership.gossiper import Gossiper
from peer.ring.hashring import HashRing
from peer.ring.placement import Placement
from peer.ring.policy import Policy
from peer.workers import WorkerRunner

NODES = ["a" * 32, "b" * 32, "c" * 32]


class AllAliveView:
    """A ClusterView of NODES, all alive, seen from NODES[0]; `placement` places under `policy`."""

    local_id = NODES[0]

    def __init__(self, policy: Policy | None = None) -> None:
        self._ring = HashRing.build(NODES, 150)
        self.placement = Placement(self._ring, self.is_usable, policy or Policy.replication(2))

    @property
    def ring(self) -> HashRing:
        return self._ring

    def is_usable(self, node_id: str) -> bool:
        return True


async def run_gossiper(gossiper: Gossiper, clock: Clock, stop: asyncio.Event) -> None:
    """A gossiper driven the way a peer drives it: by the one worker runner, closed once it stops."""
    runner = WorkerRunner(clock, stop)
    runner.add(gossiper, gossiper.interval_s)
    try:
        await runner.run()
    finally:
        await gossiper.close()
