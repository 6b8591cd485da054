"""Counters of one peer's self-healing work, reported through ClusterStatus and logs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RepairStats:
    under_replicated: int = 0
    misplaced: int = 0
    repaired: int = 0
    handed_off: int = 0
    scrubbed_bytes: int = 0
    scrub_passes: int = 0
    corrupt_found: int = 0
    gc_deleted: int = 0
    last_sync_at: float = -1.0  # monotonic time of the last completed anti-entropy round
