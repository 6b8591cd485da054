"""Housekeeping, the peer's small periodic chores, as one background worker.

Each unit publishes this peer's disk usage in its gossip, rebuilds the ring when a dead peer has
passed its grace (no gossip event marks that moment: only time does), and, every METADATA_PING_S,
pings the metadata store. The outcome of the last ping is the peer's metadata health: /health and
the cluster status report it, client calls that need the store fail fast while it is bad, and the
subscribers of `on_health_change` (the gRPC health service, the metrics) hear each change.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from peer.clock import Clock
from peer.errors import DfsError, MetadataUnavailable
from peer.membership.state import MembershipView
from peer.metadata.store import AsyncMetadata

log = logging.getLogger(__name__)

METADATA_PING_S = 2.0


@dataclass(frozen=True)
class MetadataHealth:
    healthy: bool = True
    error: str = ""


class Housekeeping:
    name = "housekeeping"

    def __init__(
        self,
        view: MembershipView,
        disk_usage: Callable[[], tuple[int, int]],
        refresh_ring: Callable[[], None],
        metadata: AsyncMetadata,
        clock: Clock,
        ping_interval_s: float = METADATA_PING_S,
    ) -> None:
        """`disk_usage` gives (chunk count, bytes) held; `refresh_ring` rebuilds the ring if its members changed."""
        self._view = view
        self._disk_usage = disk_usage
        self._refresh_ring = refresh_ring
        self._metadata = metadata
        self._clock = clock
        self._ping_interval_s = ping_interval_s
        self._next_ping = float("-inf")
        self.health = MetadataHealth()
        self._subscribers: list[Callable[[bool], Awaitable[None]]] = []

    def on_health_change(self, callback: Callable[[bool], Awaitable[None]]) -> None:
        """`callback(healthy)` is awaited after each ping that changed the metadata health."""
        self._subscribers.append(callback)

    async def work_once(self) -> bool:
        self._view.set_local_stats(*self._disk_usage())
        self._refresh_ring()
        if self._clock.monotonic() >= self._next_ping:
            self._next_ping = self._clock.monotonic() + self._ping_interval_s
            await self.check_metadata()
        return False

    async def check_metadata(self) -> None:
        """Pings the store; logs each change between healthy and degraded once, not every ping."""
        was_healthy = self.health.healthy
        try:
            await self._metadata.ping()
        except DfsError as exc:
            if was_healthy:
                log.error("degraded: %s", exc)
            self.health = MetadataHealth(False, exc.detail if isinstance(exc, MetadataUnavailable) else str(exc))
        else:
            if not was_healthy:
                log.info("metadata store %s recovered", self._metadata.backend)
            self.health = MetadataHealth()
        if self.health.healthy != was_healthy:
            for callback in self._subscribers:
                await callback(self.health.healthy)

    def metadata_health(self) -> tuple[bool, str]:
        """(healthy, last error) as of the last ping: what the file service and the status report read."""
        return self.health.healthy, self.health.error

    def health_doc(self, node_id: str) -> dict[str, object]:
        """The /health document: "ok", or "degraded" with the metadata store's error."""
        status = "ok" if self.health.healthy else "degraded"
        return {"status": status, "node_id": node_id, "metadata_error": self.health.error}
