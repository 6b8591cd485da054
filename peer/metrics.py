"""Every statistic of one peer, declared once, in a registry of its own.

The registry is the single source of the peer's statistics: the edges count requests in it, the
repair workers update it, the `Stats` RPC and `ClusterStatus` read it through `PeerMetrics.wire`, and
GET /metrics exposes it as it is (`render`). Each peer gets its own CollectorRegistry, never
prometheus_client's global one, so several peers in one process (the in-process tests) never share
a counter. Every name carries the `dfs_` namespace and its unit (`_bytes`, `_seconds`, `_total`), as
Prometheus conventions ask; docs/METRICS.md lists every family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

# Anti-entropy rounds take milliseconds on an idle cluster and minutes while a lost peer's chunks move.
ROUND_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))
# A small call answers in a millisecond; an upload or download of a large file takes minutes.
REQUEST_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                     300.0, float("inf"))
# A metadata call is a local SQLite read (well under a millisecond) or a MongoDB round trip with a
# journaled write (milliseconds), up to the store's own timeouts when it is in trouble.
METADATA_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                      float("inf"))
MEMBER_STATES = ("alive", "suspect", "dead", "left")
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # every name here is a classic one: the 0.0.4 text format suffices

# No `_created` sample beside every counter and histogram: it doubles each scrape and no query here
# uses it. (A process-wide switch of prometheus_client; the peer has no other registry.)
disable_created_metrics()


class WorkerReading(Protocol):
    """What the metrics read of a background worker (peer.workers.WorkerState has these); times are
    monotonic clock readings, -1 for never."""

    name: str
    state: str
    runs: int
    errors: int
    last_run_at: float
    last_error_at: float


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
            "dfs_corrupt_chunks_total", "Corrupt copies the scrubber found (and quarantined) here.", "corrupt_found"
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
        # Client requests, by API ("grpc", "s3") and operation (the gRPC method, the S3 operation).
        self.requests = Counter(
            "dfs_requests_total", "Client requests answered, by API, operation and result code.",
            ["api", "operation", "code"], registry=self.registry,
        )  # fmt: skip
        self.request_seconds = Histogram(
            "dfs_request_duration_seconds", "Time from a client request's arrival to its last byte or status.",
            ["api", "operation"], buckets=REQUEST_BUCKETS_S, registry=self.registry,
        )  # fmt: skip
        self.received_bytes = Counter(
            "dfs_received_bytes_total", "Bytes received from clients: request messages, or the data of uploads.",
            ["api", "operation"], registry=self.registry,
        )  # fmt: skip
        self.sent_bytes = Counter(
            "dfs_sent_bytes_total", "Bytes sent to clients: reply messages, or the data of downloads.",
            ["api", "operation"], registry=self.registry,
        )  # fmt: skip
        self.peer_chunk_bytes = Counter(
            "dfs_peer_chunk_bytes_total", "Chunk and fragment bytes this peer received from or sent to other peers "
            "as the serving side, by transport (stream: chunk streams; grpc: peers of the previous version).",
            ["transport", "direction"], registry=self.registry,
        )  # fmt: skip
        self.auth_failures = Counter(
            "dfs_auth_failures_total", "Requests refused before any handler ran, by API and reason.",
            ["api", "reason"], registry=self.registry,
        )  # fmt: skip
        self.ring_changes = Counter(
            "dfs_ring_changes_total", "Times this peer rebuilt its ring (a member joined, left or passed its grace).",
            registry=self.registry,
        )  # fmt: skip
        self.metadata_healthy = Gauge(
            "dfs_metadata_healthy", "1 when the last ping of the metadata store succeeded, else 0.",
            registry=self.registry,
        )  # fmt: skip
        self.metadata_healthy.set(1)
        self.metadata_seconds = Histogram(
            "dfs_metadata_operation_seconds", "Duration of metadata-store calls (the periodic ping included).",
            ["operation"], buckets=METADATA_BUCKETS_S, registry=self.registry,
        )  # fmt: skip
        self.metadata_errors = Counter(
            "dfs_metadata_errors_total", "Metadata-store calls that failed because the store could not serve them.",
            ["operation"], registry=self.registry,
        )  # fmt: skip
        self.disk_total = self._gauge("dfs_disk_total_bytes", "Size of the file system holding the data directory.",
                                      "disk_total_bytes")
        self.disk_free = self._gauge("dfs_disk_free_bytes",
                                     "Bytes free to this peer on the file system of the data directory.",
                                     "disk_free_bytes")
        self.resident_memory = self._gauge("dfs_resident_memory_bytes",
                                           "Resident memory (RSS) of the peer process (0: unknown on this OS).",
                                           "rss_bytes")
        self.budget_used = self._gauge("dfs_upload_budget_used_bytes",
                                       "Upload bytes in flight on this peer (the memory budget in use).",
                                       "memory_in_use_bytes")
        self.budget_limit = self._gauge("dfs_upload_budget_limit_bytes",
                                        "The bound on upload bytes in flight (DFS_INFLIGHT_CHUNKS chunks).",
                                        "memory_budget_bytes")
        self.ring_peers = self._gauge("dfs_ring_peers", "Peers holding positions on this peer's ring.")
        # Read from their owners at each collection; the peer's composition root says where (track_*).
        self._members = _MembersCollector()
        self._workers = _WorkersCollector()
        self._quarantined = _CountCollector(
            "dfs_quarantined_chunks", "Corrupt copies moved to quarantine here, whichever check found them."
        )
        for collector in (self._members, self._workers, self._quarantined):
            self.registry.register(collector)
        self._children: dict[tuple[object, ...], Callable[[float], None]] = {}

    @property
    def wire(self) -> tuple[WireField, ...]:
        """The PeerStats fields read from this registry, in declaration order."""
        return tuple(self._wire)

    def count_request(self, api: str, operation: str, code: str, seconds: float, received: int, sent: int) -> None:
        """One answered client request. Label children are looked up once and kept: prometheus_client
        takes a lock on every `labels()` call, the increments themselves are cheap."""
        self._child(self.requests, "inc", api, operation, code)(1)
        self._child(self.request_seconds, "observe", api, operation)(seconds)
        if received:
            self._child(self.received_bytes, "inc", api, operation)(received)
        if sent:
            self._child(self.sent_bytes, "inc", api, operation)(sent)

    def peer_chunk_bytes_moved(self, transport: str, direction: str, nbytes: int) -> None:
        """Chunk bytes served to or taken from another peer: a rolling upgrade is complete when the
        grpc ones stop growing."""
        self._child(self.peer_chunk_bytes, "inc", transport, direction)(nbytes)

    def auth_failed(self, api: str, reason: str) -> None:
        self._child(self.auth_failures, "inc", api, reason)(1)

    def observe_metadata(self, operation: str, seconds: float, failed: bool) -> None:
        """One metadata-store call; `failed` when the store could not serve it (not a plain "not found")."""
        self._child(self.metadata_seconds, "observe", operation)(seconds)
        if failed:
            self._child(self.metadata_errors, "inc", operation)(1)

    def render(self) -> tuple[bytes, str]:
        """The registry in the Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE

    def track_disk(self, usage: Callable[[], tuple[int, int]]) -> None:
        """(total, free) bytes of the data directory's file system, read at each collection."""
        self.disk_total.set_function(lambda: usage()[0])
        self.disk_free.set_function(lambda: usage()[1])

    def track_memory(self, resident: Callable[[], int]) -> None:
        """The process's resident memory in bytes, read at each collection."""
        self.resident_memory.set_function(resident)

    def track_budget(self, used: Callable[[], int], limit: int) -> None:
        """The upload memory budget: bytes of chunks in flight now, and the bound."""
        self.budget_used.set_function(used)
        self.budget_limit.set(limit)

    def track_cluster(self, member_states: Callable[[], Iterable[str]], ring_size: Callable[[], int]) -> None:
        """Members by state (every state listed, 0 when none) and the peers on the ring, at each collection."""
        self._members.states = member_states
        self.ring_peers.set_function(ring_size)

    def track_workers(self, states: Callable[[], Iterable[WorkerReading]], wall_offset: Callable[[], float]) -> None:
        """Each background worker's runs, errors, last run and last error; `wall_offset()` turns a
        monotonic reading into Unix time (wall minus monotonic, now)."""
        self._workers.states, self._workers.wall_offset = states, wall_offset

    def track_quarantine(self, quarantined: Callable[[], int]) -> None:
        """Copies the chunk store moved to quarantine since start (a read, a put or the scrubber found
        them corrupt), read at each collection."""
        self._quarantined.read = quarantined

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

    def _child(self, family: Counter | Histogram, method: str, *labels: str) -> Callable[[float], None]:
        key = (id(family), *labels)  # the families live as long as this object
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = getattr(family.labels(*labels), method)
        return found


class _CountCollector(Collector):
    """A counter whose value another object keeps (a plain int it increments under its own lock)."""

    def __init__(self, name: str, doc: str) -> None:
        self._name, self._doc = name, doc
        self.read: Callable[[], int] = lambda: 0

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._doc, value=self.read())


class _MembersCollector(Collector):
    def __init__(self) -> None:
        self.states: Callable[[], Iterable[str]] = tuple

    def collect(self) -> Iterator[Metric]:
        counts = dict.fromkeys(MEMBER_STATES, 0)
        for state in self.states():
            counts[state] = counts.get(state, 0) + 1
        family = GaugeMetricFamily("dfs_members", "Members this peer knows, itself included, by state.",
                                   labels=["state"])
        for state, count in counts.items():
            family.add_metric([state], count)
        yield family


class _WorkersCollector(Collector):
    def __init__(self) -> None:
        self.states: Callable[[], Iterable[WorkerReading]] = tuple
        self.wall_offset: Callable[[], float] = float

    def collect(self) -> Iterator[Metric]:
        offset = self.wall_offset()
        runs = CounterMetricFamily("dfs_worker_runs", "Units of work a background worker has run.",
                                   labels=["worker"])
        errors = CounterMetricFamily("dfs_worker_errors", "Units of work that failed with an error.",
                                     labels=["worker"])
        last_run = GaugeMetricFamily("dfs_worker_last_run_timestamp_seconds",
                                     "Unix time the worker's last unit ended (0: never).", labels=["worker"])
        last_error = GaugeMetricFamily("dfs_worker_last_error_timestamp_seconds",
                                       "Unix time of the worker's last error (0: never).", labels=["worker"])
        busy = GaugeMetricFamily("dfs_worker_busy", "1 while a unit runs or more work waits, else 0.",
                                 labels=["worker"])
        for w in self.states():
            runs.add_metric([w.name], w.runs)
            errors.add_metric([w.name], w.errors)
            last_run.add_metric([w.name], w.last_run_at + offset if w.last_run_at >= 0 else 0.0)
            last_error.add_metric([w.name], w.last_error_at + offset if w.last_error_at >= 0 else 0.0)
            busy.add_metric([w.name], 1.0 if w.state == "busy" else 0.0)
        yield from (runs, errors, last_run, last_error, busy)
