"""The metrics registry is the one source of a peer's statistics: repair work updates it, and the
status, the Stats RPC, the client model and the Prometheus exposition all read the same numbers."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import prometheus_client
from prometheus_client import generate_latest

from client.models import PeerStats, stats_from_proto
from peer.clock import ManualClock
from peer.memory import resident_bytes
from peer.metadata.store import AsyncMetadata
from peer.metrics import PeerMetrics
from peer.repair.gc import GarbageCollector
from peer.repair.scrub import Scrubber
from peer.rpc.peer_service import PeerChunksServicer
from peer.status import stats_dict
from peer.storage.chunkstore import ChunkStore
from proto import dfs_pb2 as pb

MIB = 1024 * 1024

FAMILIES = (  # as the text exposition names them: counters with their `_total`
    "dfs_chunks_stored", "dfs_stored_bytes", "dfs_under_replicated_chunks", "dfs_misplaced_chunks",
    "dfs_repaired_chunks_total", "dfs_handed_off_chunks_total", "dfs_scrub_pass_verified_bytes",
    "dfs_scrubbed_bytes_total", "dfs_scrub_passes_total", "dfs_corrupt_chunks_total", "dfs_gc_deleted_chunks_total",
    "dfs_antientropy_last_sync_timestamp_seconds", "dfs_antientropy_round_seconds", "dfs_disk_total_bytes",
    "dfs_disk_free_bytes", "dfs_resident_memory_bytes", "dfs_upload_budget_used_bytes", "dfs_upload_budget_limit_bytes",
)  # fmt: skip


class NothingReferenced:
    backend = "fake"

    def referenced_chunks(self, ids: Sequence[str]) -> set[str]:
        return set()


class View:
    local_id = "a"


class OwnedElsewhere:
    """A placement in which this peer ("a") owns nothing, so the scrubber leaves restores to hinted handoff."""

    policy = "rep:1"

    def owners(self, chunk_id: str) -> tuple[str, ...]:
        return ("b",)


def put_random(store: ChunkStore, size: int = 4096) -> str:
    data = os.urandom(size)
    chunk_id = hashlib.sha256(data).hexdigest()
    store.put(chunk_id, data)
    return chunk_id


async def collect_garbage(tmp_path: Path, metrics: PeerMetrics) -> ChunkStore:
    store = ChunkStore(tmp_path)
    put_random(store)
    clock = ManualClock(start=10.0**9)  # decades ahead of the chunk file's modification time
    gc = GarbageCollector(store, AsyncMetadata(NothingReferenced()), metrics, clock, grace_s=60)  # type: ignore[arg-type]
    await gc.work_once()
    return store


async def test_gc_increments_the_registry_and_the_status_reads_it(tmp_path: Path) -> None:
    metrics = PeerMetrics()
    store = await collect_garbage(tmp_path, metrics)
    assert store.stats == (0, 0)
    assert metrics.samples()["dfs_gc_deleted_chunks_total"] == 1
    assert stats_dict(metrics, 0.0)["gc_deleted"] == 1


async def test_the_stats_rpc_and_the_client_model_carry_the_registry(tmp_path: Path) -> None:
    metrics = PeerMetrics()
    store = await collect_garbage(tmp_path / "gc", metrics)
    put_random(store, 1000)
    metrics.track_store(lambda: store.stats)
    servicer = PeerChunksServicer(store, None, lambda: stats_dict(metrics, 0.0), "n1")  # type: ignore[arg-type]
    reply = await servicer.Stats(pb.StatsRequest(), None)  # type: ignore[arg-type]
    assert (reply.node_id, reply.gc_deleted, reply.chunk_count, reply.chunk_bytes) == ("n1", 1, 1, 1000)
    model = stats_from_proto(reply)
    assert (model.gc_deleted, model.chunk_count, model.chunk_bytes, model.last_sync_s) == (1, 1, 1000, -1.0)
    assert model.to_dict()["gc_deleted"] == 1


class NoPlacements:
    """A metadata store where every chunk is placed under the cluster's policy."""

    async def placements(self, ids: object, default_policy: str) -> dict[str, object]:
        return {}


async def test_scrub_counts_passes_bytes_and_corrupt_copies(tmp_path: Path) -> None:
    metrics = PeerMetrics()
    store = ChunkStore(tmp_path)
    good, bad = put_random(store), put_random(store)
    store.path(bad).write_bytes(bytes(4096))  # same size, wrong content
    scrubber = Scrubber(View(), store, None, NoPlacements(), metrics, ManualClock(),  # type: ignore[arg-type]
                        placement=OwnedElsewhere(), bytes_per_s=0, pass_interval_s=60)  # type: ignore[arg-type]  # fmt: skip
    while await scrubber.work_once():
        pass
    stats = stats_dict(metrics, 0.0)
    assert (stats["scrub_passes"], stats["corrupt_found"], stats["scrubbed_bytes"]) == (1, 1, 2 * 4096)
    assert metrics.samples()["dfs_scrubbed_bytes_total"] == 2 * 4096
    assert store.has(good) and not store.has(bad)


def test_last_sync_travels_as_an_age_and_never_as_minus_one() -> None:
    metrics = PeerMetrics()
    assert stats_dict(metrics, 5000.0)["last_sync_s"] == -1.0
    metrics.last_sync.set(4000.0)
    assert stats_dict(metrics, 4012.5)["last_sync_s"] == 12.5
    assert stats_dict(metrics, 3000.0)["last_sync_s"] == 0.0  # a wall clock stepping back reads "just now"


def test_disk_and_memory_travel_in_the_stats() -> None:
    metrics = PeerMetrics()
    metrics.track_disk(lambda: (1000 * MIB, 250 * MIB))
    metrics.track_memory(lambda: 80 * MIB)
    metrics.track_budget(lambda: 3 * MIB, 64 * MIB)
    stats = stats_dict(metrics, 0.0)
    disk_and_rss = (stats["disk_total_bytes"], stats["disk_free_bytes"], stats["rss_bytes"])
    assert disk_and_rss == (1000 * MIB, 250 * MIB, 80 * MIB)
    assert (stats["memory_budget_bytes"], stats["memory_in_use_bytes"]) == (64 * MIB, 3 * MIB)
    reply = pb.PeerStats(node_id="n", **stats)
    assert stats_from_proto(reply).disk_free_bytes == 250 * MIB


def test_resident_memory_is_read_from_statm(tmp_path: Path) -> None:
    statm = tmp_path / "statm"
    statm.write_text("5000 300 40 1 0 200 0\n")
    assert resident_bytes(str(statm)) == 300 * os.sysconf("SC_PAGE_SIZE")
    assert resident_bytes(str(tmp_path / "missing")) == 0
    statm.write_text("garbage")
    assert resident_bytes(str(statm)) == 0
    if Path("/proc/self/statm").exists():
        assert resident_bytes() > MIB  # this interpreter holds more than a megabyte


def test_two_peers_registries_are_independent() -> None:
    first, second = PeerMetrics(), PeerMetrics()  # a shared registry would refuse the second declaration
    first.repaired.inc(3)
    first.under_replicated.set(7)
    assert stats_dict(first, 0.0)["repaired"] == 3 and stats_dict(first, 0.0)["under_replicated"] == 7
    assert stats_dict(second, 0.0)["repaired"] == 0 and stats_dict(second, 0.0)["under_replicated"] == 0
    assert prometheus_client.REGISTRY.get_sample_value("dfs_repaired_chunks_total") is None


def test_exposition_names_every_dfs_family() -> None:
    metrics = PeerMetrics()
    metrics.repaired.inc()
    text = generate_latest(metrics.registry).decode()
    for family in FAMILIES:
        assert f"# TYPE {family} " in text, family
    assert "dfs_repaired_chunks_total 1.0" in text
    assert 'dfs_antientropy_round_seconds_bucket{le="+Inf"} 0.0' in text
    assert all(line.startswith(("# ", "dfs_")) for line in text.splitlines())


def test_every_scalar_peerstats_field_is_read_from_the_registry() -> None:
    scalars = {f.name for f in pb.PeerStats.DESCRIPTOR.fields if not f.is_repeated and f.message_type is None}
    metrics = PeerMetrics()
    stats = stats_dict(metrics, 0.0)
    assert set(stats) == scalars - {"node_id"}
    pb.PeerStats(node_id="n", **stats)  # every value has its wire type (whole numbers stay ints)
    samples = metrics.samples()
    assert [f.sample for f in metrics.wire if f.sample not in samples] == []  # a misspelt sample would read 0


def test_the_client_model_keeps_its_attributes_and_defaults() -> None:
    stats = PeerStats(chunk_count=2, under_replicated=1)
    assert (stats.chunk_count, stats.under_replicated, stats.repaired, stats.last_sync_s) == (2, 1, 0, -1.0)
    assert set(stats.to_dict()) >= {
        "chunk_count", "chunk_bytes", "under_replicated", "misplaced", "repaired", "handed_off", "scrubbed_bytes",
        "scrub_passes", "corrupt_found", "gc_deleted", "last_sync_s",
    }  # fmt: skip
    assert stats_from_proto(pb.PeerStats(node_id="n", last_sync_s=-1.0)) == PeerStats()
