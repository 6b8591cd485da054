"""Every statistic of one peer, declared once, in a registry of its own.

The registry is the single source of the peer's statistics: the repair workers update it, the
`Stats` RPC and `ClusterStatus` read it through `PeerMetrics.wire`, and a `/metrics` endpoint can
expose it as it is. Each peer gets its own CollectorRegistry, never prometheus_client's global one,
so several peers in one process (the in-process tests) never share a counter. Every name carries the
`dfs_` namespace and its unit (`_bytes`, `_seconds`, `_total`), as Prometheus conventions ask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Anti-entropy rounds take milliseconds on an idle cluster and minutes while a lost peer's chunks move.
ROUND_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))


@dataclass(frozen=True)
class WireField:
    """One PeerStats field and the registry sample it carries.

    Counts and sizes travel as whole numbers. A `since` sample is a Unix timestamp and its field
    carries the seconds elapsed since it (-1: never happened): peers' wall clocks disagree, an age
    read on the peer that measured it does not."""

    field: str
    sample: str
    since: bool = False

    def read(self, samples: Mapping[str, float], now: float) -> int | float:
        value = samples.get(self.sample, 0.0)
        if self.since:
            return -1.0 if value <= 0 else max(0.0, now - value)
        return int(value)


class PeerMetrics:
    """The counters, gauges and histograms of one peer; a new statistic is declared here, with the
    PeerStats field that carries it when the cluster status should show it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._wire: list[WireField] = []
        self.chunks_stored = self._gauge("dfs_chunks_stored", "Chunks held on this peer's disk.", "chunk_count")
        self.stored_bytes = self._gauge("dfs_stored_bytes", "Bytes of chunks held on this peer's disk.", "chunk_bytes")
        self.under_replicated = self._gauge(
            "dfs_under_replicated_chunks",
            "Chunks this peer owns whose other owners lack them or are down, as of the last anti-entropy round.",
            "under_replicated",
        )
        self.misplaced = self._gauge(
            "dfs_misplaced_chunks",
            "Chunks held here that this peer does not own (hinted copies, copies left by a ring change).",
            "misplaced",
        )
        self.repaired = self._counter(
            "dfs_repaired_chunks_total", "Copies pushed, pulled or restored to heal placement since start.", "repaired"
        )
        self.handed_off = self._counter(
            "dfs_handed_off_chunks_total", "Misplaced copies handed to their owners and dropped here.", "handed_off"
        )
        self.scrub_pass_bytes = self._gauge(
            "dfs_scrub_pass_verified_bytes", "Bytes verified so far in the current scrub pass.", "scrubbed_bytes"
        )
        self.scrubbed_bytes = self._counter("dfs_scrubbed_bytes_total", "Bytes read back and verified by scrubbing.")
        self.scrub_passes = self._counter("dfs_scrub_passes_total", "Completed scrub passes.", "scrub_passes")
        self.corrupt_found = self._counter(
            "dfs_corrupt_chunks_total", "Corrupt copies found and quarantined here.", "corrupt_found"
        )
        self.gc_deleted = self._counter(
            "dfs_gc_deleted_chunks_total", "Unreferenced chunks deleted by garbage collection.", "gc_deleted"
        )
        self.last_sync = self._gauge(
            "dfs_antientropy_last_sync_timestamp_seconds",
            "Unix time of the last anti-entropy round that compared every peer within its budget (0: never).",
            "last_sync_s",
            since=True,
        )
        self.antientropy_round = Histogram(
            "dfs_antientropy_round_seconds", "Duration of anti-entropy rounds.",
            buckets=ROUND_BUCKETS_S, registry=self.registry,
        )  # fmt: skip

    @property
    def wire(self) -> tuple[WireField, ...]:
        """The PeerStats fields read from this registry, in declaration order."""
        return tuple(self._wire)

    def track_store(self, stats: Callable[[], tuple[int, int]]) -> None:
        """Reads the chunk count and bytes from the store at each collection: the store keeps both
        current, so the gauges need no update path of their own."""
        self.chunks_stored.set_function(lambda: stats()[0])
        self.stored_bytes.set_function(lambda: stats()[1])

    def samples(self) -> dict[str, float]:
        """Every unlabelled sample by name, from one collection of the registry."""
        return {s.name: s.value for family in self.registry.collect() for s in family.samples if not s.labels}

    def _gauge(self, name: str, doc: str, wire: str = "", *, since: bool = False) -> Gauge:
        self._declare(wire, name, since)
        return Gauge(name, doc, registry=self.registry)

    def _counter(self, name: str, doc: str, wire: str = "") -> Counter:
        # prometheus_client drops `_total` from the family name and adds it back to the sample.
        self._declare(wire, name, False)
        return Counter(name, doc, registry=self.registry)

    def _declare(self, wire: str, sample: str, since: bool) -> None:
        if wire:
            self._wire.append(WireField(wire, sample, since))
