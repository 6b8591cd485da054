"""Stand-ins for the rest of a peer, shared by the transfer-service unit tests."""

from __future__ import annotations

from peer.ring.hashring import HashRing

NODES = ["a" * 32, "b" * 32, "c" * 32]


class AllAliveView:
    """A ClusterView of NODES, all alive, seen from NODES[0]."""

    local_id = NODES[0]

    def __init__(self) -> None:
        self._ring = HashRing.build(NODES, 150)

    @property
    def ring(self) -> HashRing:
        return self._ring

    def is_usable(self, node_id: str) -> bool:
        return True

    def usable_count(self) -> int:
        return len(NODES)
